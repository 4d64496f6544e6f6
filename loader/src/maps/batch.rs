//! BPF_MAP_*_BATCH with a per-element fallback for kernels (and map types)
//! without batch operations.
//!
//! Minimum kernel version: 5.6 for batch commands; older kernels use the fallback.

use std::os::fd::AsFd;

use super::{Map, MapError, UpdateFlags};
use crate::sys::map::{self as sysmap, Batch};
use crate::sys::{Cmd, SysError};

/// Outcome of one low-level batch call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchResult {
    /// Elements processed.
    pub count: u32,
    /// The map has no more elements after this batch.
    pub done: bool,
}

/// Whether the kernel lacks the batch command or this map type does not implement it.
fn unsupported(e: &SysError) -> bool {
    const ENOTSUPP: i32 = 524;
    matches!(e.errno(), libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
}

impl Map {
    /// One batch call with this map's own element sizes, against which the
    /// sys layer checks every buffer of `b`.
    fn batch_call(
        &self,
        cmd: Cmd,
        b: Batch<'_>,
    ) -> Result<Result<(u32, bool), SysError>, MapError> {
        let sizes = self.sizes()?;
        // SAFETY: `sizes` come from this map's definition.
        Ok(unsafe { sysmap::batch(cmd, self.as_fd(), sizes, b) })
    }

    /// One BPF_MAP_LOOKUP(_AND_DELETE)_BATCH call: up to `count` elements after
    /// the `in_batch` token into `keys`/`values`; `out_batch` receives the next
    /// token (buffers of `max(key_size, 4)` bytes).
    pub fn lookup_batch_bytes(
        &self,
        delete: bool,
        in_batch: Option<&[u8]>,
        out_batch: &mut [u8],
        keys: &mut [u8],
        values: &mut [u8],
        count: u32,
    ) -> Result<BatchResult, MapError> {
        let cmd = if delete {
            Cmd::MapLookupAndDeleteBatch
        } else {
            Cmd::MapLookupBatch
        };
        let op = if delete {
            "lookup and delete batch"
        } else {
            "lookup batch"
        };
        let n = count as usize;
        let token = (self.key_size() as usize).max(4);
        if let Some(in_batch) = in_batch {
            self.check_buf(op, "in_batch", in_batch.len(), token)?;
        }
        self.check_buf(op, "out_batch", out_batch.len(), token)?;
        self.check_buf(op, "keys", keys.len(), n * self.key_size() as usize)?;
        self.check_buf(op, "values", values.len(), n * self.value_buf_len()?)?;
        let (count, done) = self
            .batch_call(
                cmd,
                Batch {
                    in_batch,
                    out_batch: Some(out_batch),
                    keys,
                    values,
                    count,
                    elem_flags: 0,
                },
            )?
            .map_err(|e| self.sys(op, e))?;
        Ok(BatchResult { count, done })
    }

    /// Every key and value (concatenated, values of [`Map::value_buf_len`]
    /// bytes each), by batches when the kernel supports them.
    pub fn lookup_all_bytes(&self, delete: bool) -> Result<(Vec<u8>, Vec<u8>), MapError> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        self.lookup_all_bytes_into(delete, &mut keys, &mut values)?;
        Ok((keys, values))
    }

    /// Like [`Map::lookup_all_bytes`], into `keys` and `values` (cleared
    /// first, their capacity kept). The kernel writes each batch straight
    /// into them; a reader that polls a map with the same two buffers pays
    /// no allocation and no page faults for fresh memory after the first
    /// read (on a 1M-entry hash map those faults cost more than the
    /// user-space copying they replace).
    pub fn lookup_all_bytes_into(
        &self,
        delete: bool,
        keys: &mut Vec<u8>,
        values: &mut Vec<u8>,
    ) -> Result<(), MapError> {
        let ks = self.key_size() as usize;
        let vs = self.value_buf_len()?;
        let token_len = ks.max(4);
        let cmd = if delete {
            Cmd::MapLookupAndDeleteBatch
        } else {
            Cmd::MapLookupBatch
        };
        keys.clear();
        values.clear();
        let mut tokens = [vec![0u8; token_len], vec![0u8; token_len]];
        let mut have_in = false;
        let mut chunk = self.max_entries().clamp(1, 4096);
        let mut got = 0usize;
        let mut first = true;
        loop {
            let c = chunk as usize;
            keys.resize((got + c) * ks, 0);
            values.resize((got + c) * vs, 0);
            let [in_tok, out_tok] = &mut tokens;
            let r = self.batch_call(
                cmd,
                Batch {
                    in_batch: have_in.then_some(&in_tok[..]),
                    out_batch: Some(out_tok),
                    keys: &mut keys[got * ks..],
                    values: &mut values[got * vs..],
                    count: chunk,
                    elem_flags: 0,
                },
            )?;
            match r {
                Ok((n, done)) => {
                    got += n as usize;
                    if done {
                        keys.truncate(got * ks);
                        values.truncate(got * vs);
                        return Ok(());
                    }
                    tokens.swap(0, 1);
                    have_in = true;
                }
                // A hash bucket holds more elements than `count`: retry bigger.
                Err(e) if e.errno() == libc::ENOSPC && chunk < self.max_entries() => {
                    chunk = chunk.saturating_mul(2)
                }
                Err(e) if first && unsupported(&e) => {
                    let (k, v) = self.lookup_all_fallback(delete)?;
                    *keys = k;
                    *values = v;
                    return Ok(());
                }
                Err(e) => {
                    keys.truncate(got * ks);
                    values.truncate(got * vs);
                    return Err(self.sys("lookup batch", e));
                }
            }
            first = false;
        }
    }

    fn lookup_all_fallback(&self, delete: bool) -> Result<(Vec<u8>, Vec<u8>), MapError> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let all: Vec<Vec<u8>> = self.keys_bytes().collect::<Result<_, _>>()?;
        for k in all {
            if let Some(v) = self.lookup_bytes(&k, UpdateFlags::ANY)? {
                if delete {
                    self.delete_bytes(&k)?;
                }
                keys.extend_from_slice(&k);
                values.extend_from_slice(&v);
            }
        }
        Ok((keys, values))
    }

    /// Updates `keys.len() / key_size` elements (values of [`Map::value_buf_len`] bytes each).
    pub fn update_batch_bytes(
        &self,
        keys: &[u8],
        values: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let ks = (self.key_size() as usize).max(1);
        let vs = self.value_buf_len()?.max(1);
        let n = keys.len() / ks;
        self.check_buf("update batch", "keys", keys.len(), n * ks)?;
        self.check_buf("update batch", "values", values.len(), n * vs)?;
        if n == 0 {
            return Ok(());
        }
        let (mut k, mut v) = (keys.to_vec(), values.to_vec());
        let r = self.batch_call(
            Cmd::MapUpdateBatch,
            Batch {
                in_batch: None,
                out_batch: None,
                keys: &mut k,
                values: &mut v,
                count: n as u32,
                elem_flags: flags.bits(),
            },
        )?;
        match r {
            Ok(_) => Ok(()),
            Err(e) if unsupported(&e) => {
                for (k, v) in keys.chunks_exact(ks).zip(values.chunks_exact(vs)) {
                    self.update_bytes(k, v, flags)?;
                }
                Ok(())
            }
            Err(e) => Err(self.sys("update batch", e)),
        }
    }

    /// Deletes `keys.len() / key_size` keys; returns how many existed.
    pub fn delete_batch_bytes(&self, keys: &[u8]) -> Result<u32, MapError> {
        let ks = (self.key_size() as usize).max(1);
        let n = keys.len() / ks;
        self.check_buf("delete batch", "keys", keys.len(), n * ks)?;
        if n == 0 {
            return Ok(0);
        }
        let mut k = keys.to_vec();
        let r = self.batch_call(
            Cmd::MapDeleteBatch,
            Batch {
                in_batch: None,
                out_batch: None,
                keys: &mut k,
                values: &mut [],
                count: n as u32,
                elem_flags: 0,
            },
        )?;
        match r {
            Ok((count, false)) => Ok(count),
            // ENOENT: key number `count` was missing and the kernel stopped there.
            Ok((count, true)) => {
                let mut existed = count;
                for k in keys.chunks_exact(ks).skip(count as usize + 1) {
                    existed += u32::from(self.delete_bytes(k)?);
                }
                Ok(existed)
            }
            Err(e) if unsupported(&e) => {
                let mut existed = 0;
                for k in keys.chunks_exact(ks) {
                    existed += u32::from(self.delete_bytes(k)?);
                }
                Ok(existed)
            }
            Err(e) => Err(self.sys("delete batch", e)),
        }
    }
}
