//! What every embedding table reports about itself: where its rows live and the bytes
//! each tier holds.

/// Where a table's rows live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablePlacement {
    /// The whole table is in device memory (on the CPU backend: the "device" tier).
    Resident,
    /// The full table is in host RAM; hot rows are cached on the device.
    HostOffloaded,
    /// The full table is memory-mapped from its file; hot rows are cached on the device.
    MappedFile,
}

/// Bytes a table holds in each tier, and its cache counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMemory {
    /// Bytes of the table held in device memory (whole table when resident).
    pub resident_bytes: u64,
    /// Bytes of the hot-row cache in device memory.
    pub cache_bytes: u64,
    /// Bytes of the table held in host RAM (0 when resident or memory-mapped).
    pub host_bytes: u64,
    /// Bytes of the weights file the table is read from in place (memory-mapped: page
    /// cache the kernel may reclaim, not an allocation; 0 unless `MappedFile`).
    pub mapped_bytes: u64,
    /// Rows the hot-row cache holds (0 when resident).
    pub cache_capacity_rows: u64,
    /// Cache hits since load.
    pub hits: u64,
    /// Cache misses since load.
    pub misses: u64,
    /// Cache evictions since load.
    pub evictions: u64,
}

impl TableMemory {
    /// Hits over lookups since load (0 before the first lookup).
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// How many bags of `bag` rows `indices` holds, after checking that they split into such
/// bags and that every index is a row of `table` (`rows` rows): the check every table's
/// `bag_sum` makes first, so a bad batch is an error, never a panic or a device fault.
pub fn check_bags(table: &str, indices: &[i64], rows: usize, bag: usize) -> crate::Result<usize> {
    if bag == 0 || !indices.len().is_multiple_of(bag) {
        return Err(crate::KernelError::Shape(format!(
            "table '{table}': {} indices do not split into bags of {bag}",
            indices.len()
        )));
    }
    match indices.iter().find(|&&i| i < 0 || i as u64 >= rows as u64) {
        Some(&index) => Err(crate::KernelError::IndexOutOfRange {
            table: table.to_string(),
            index,
            rows,
        }),
        None => Ok(indices.len() / bag),
    }
}
