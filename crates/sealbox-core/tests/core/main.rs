//! Sealbox core: the envelope format against its frozen vectors, tamper resistance of every
//! region, property tests, and the plain-HTTP endpoint rule. One test binary, a module per topic.

mod properties;
mod tamper;
mod transport;
mod vectors;
