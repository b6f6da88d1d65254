//! Walking a store page by page, in key order, keeping one shard's keys.

use crate::shard::Shard;
use crate::store::{ObjectMeta, Store, StoreError};

/// Objects per `list` call.
pub(crate) const PAGE_SIZE: usize = 256;

/// The pages of a store after a key, filtered to a shard.
pub(crate) struct Pages<'a> {
    store: &'a dyn Store,
    shard: Shard,
    after: Option<String>,
    page_size: usize,
    done: bool,
}

/// One page: the shard's objects on it, and the last key listed (the resume point once
/// every object of the page is done).
pub(crate) struct Page {
    pub(crate) objects: Vec<ObjectMeta>,
    pub(crate) last_key: String,
}

impl<'a> Pages<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        shard: Shard,
        after: Option<String>,
        page_size: usize,
    ) -> Self {
        Self {
            store,
            shard,
            after,
            page_size: page_size.max(1),
            done: false,
        }
    }

    /// The next page, `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<Result<Page, StoreError>> {
        if self.done {
            return None;
        }
        let listed = match self.store.list(self.after.as_deref(), self.page_size).await {
            Ok(listed) => listed,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let Some(last) = listed.last() else {
            self.done = true;
            return None;
        };
        let last_key = last.key.clone();
        self.after = Some(last_key.clone());
        let objects = listed
            .into_iter()
            .filter(|m| self.shard.contains(&m.key))
            .collect();
        Some(Ok(Page { objects, last_key }))
    }
}
