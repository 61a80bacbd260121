//! File-backed storage (being written).
