//! The embedding-store seam: where a table's rows live is decided at load time, and a
//! model only ever asks for pooled bags. (The store trait lives beside [`Ops`](crate::Ops),
//! which it names and which names it; this module keeps its public path.)

pub use crate::ops::EmbeddingStore;
pub use crate::table::{TableMemory, TablePlacement};
