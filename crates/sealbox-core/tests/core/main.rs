//! Sealbox core: the envelope format against its frozen vectors, tamper resistance of every
//! region, and property tests. One test binary, a module per topic.

mod properties;
mod tamper;
mod vectors;
