//! Alertmanager webhook (payload version 4) decoding and fingerprints.
