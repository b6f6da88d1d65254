"""Groups a flat profile of `sealbox serve` into the cost centres of issue #16 section 3.

Input: `perf report --no-children --stdio -g none --sort dso,sym --percent-limit 0` (self time
per symbol), or `callgrind_annotate --threshold=100` (self instructions per function).
Output: a Markdown table of categories with their share of the samples (or instructions) and
the top symbols of each. Self time only: a category's figure is time spent *in* its functions,
not in what they call (an allocation made by serde_json counts under the allocator).

Usage: profile_categories.py perf|callgrind FILE
"""

import re
import sys

# First match wins. Patterns are searched in "dso symbol" (perf) or "file:function [object]".
CATEGORIES = [
    ("kernel (syscalls, TCP loopback, scheduling)", r"\[kernel|\[k\]"),
    ("GlobSet built per request (globset, regex-automata, regex-syntax)", r"globset|regex_automata|regex_syntax|aho_corasick"),
    ("JSON (serde_json, serde)", r"serde_json|serde_core|serde::"),
    ("base64", r"base64"),
    ("HKDF-SHA256 (sha2, hkdf, hmac)", r"sha2|hkdf|hmac|digest::|sha256"),
    ("AES-256-GCM (ring)", r"aesni|aes_hw|gcm_|ghash|ring::aead|_aes_|ring_core"),
    ("key-ring lookups (moka, hashing, keyring)", r"moka|sealbox_keyring|hash::sip|hash_one|hashbrown|BuildHasher|crossbeam"),
    ("envelope parse and context (sealbox_core)", r"sealbox_core"),
    ("protobuf (prost)", r"prost"),
    ("audit log and metrics (sealbox_server::state/metrics, prometheus)", r"write_audit|sealbox_server::metrics|prometheus|Metrics::observe"),
    ("tracing", r"tracing"),
    ("memory allocator (malloc, free, realloc)", r"malloc|_int_free|\bfree\b|cfree|realloc|__rdl_|__rust_alloc|__rust_dealloc|__rust_realloc|unlink_chunk|arena|tcache|finish_grow|do_reserve_and_handle"),
    ("memcpy / memmove / memcmp / memset", r"memmove|memcpy|memcmp|memset|strlen|memchr"),
    ("HTTP and runtime (hyper, axum, tower, tokio, mio, http, bytes)", r"hyper|axum|tower|tokio|mio::|\bhttp::|bytes::|httparse|futures"),
    ("other Sealbox code (sealbox_server, sealbox_temporal, sealbox_policy)", r"sealbox_"),
    ("string formatting and UTF-8 (core::fmt, alloc::string, from_utf8)", r"core::fmt|alloc::fmt|alloc::string|from_utf8|core::str"),
    ("collections (BTreeMap, Vec, iterators)", r"btree|alloc::vec|core::iter|raw_vec|alloc::slice"),
]


def parse_perf(path):
    rows = []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            pct, dso, kind, sym = m.groups()
            tag = "[k]" if kind == "k" else ""
            rows.append((float(pct), f"{dso} {tag} {sym.strip()}"))
    return rows


def parse_callgrind(path):
    rows = []
    total = None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if m and total:
            rows.append((100.0 * int(m.group(1).replace(",", "")) / total, m.group(2)))
    return rows


def short(sym):
    sym = re.sub(r"\s*\[/[^\]]*\]$", "", sym)
    sym = re.sub(r"^\S+\s+(\[k\]\s+)?", "", sym) if " " in sym else sym
    sym = sym.replace("???:", "")
    return sym[:90]


def main():
    kind, path = sys.argv[1], sys.argv[2]
    rows = parse_perf(path) if kind == "perf" else parse_callgrind(path)
    # callgrind's self listing repeats the thread entry points with 100%: drop rows whose
    # self share is the whole program (they are not self costs), keep everything else.
    rows = [r for r in rows if r[0] < 99.9]
    groups = {name: [] for name, _ in CATEGORIES}
    groups["other"] = []
    for pct, sym in rows:
        for name, pat in CATEGORIES:
            if re.search(pat, sym):
                groups[name].append((pct, sym))
                break
        else:
            groups["other"].append((pct, sym))
    total = sum(p for p, _ in rows)
    print(f"| category (self {'time' if kind == 'perf' else 'instructions'}) | share | top symbols |")
    print("|---|---:|---|")
    for name, items in sorted(groups.items(), key=lambda kv: -sum(p for p, _ in kv[1])):
        share = sum(p for p, _ in items)
        if share < 0.05:
            continue
        items.sort(key=lambda r: -r[0])
        top = "; ".join(f"`{short(s)}` {p:.1f}%" for p, s in items[:3])
        print(f"| {name} | {share:.1f}% | {top} |")
    print(f"\n(total listed: {total:.1f}%)")


if __name__ == "__main__":
    main()
