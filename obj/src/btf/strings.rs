//! The BTF string section: NUL-terminated names addressed by byte offset.

use super::BtfError;

/// Reads the NUL-terminated string at `offset` of a string section.
pub fn str_at(strings: &[u8], offset: u32) -> Result<&str, BtfError> {
    let start = offset as usize;
    let rest = strings.get(start..).ok_or(BtfError::String {
        offset,
        reason: "past the end of the string section",
    })?;
    let len = rest.iter().position(|&b| b == 0).ok_or(BtfError::String {
        offset,
        reason: "not NUL-terminated",
    })?;
    std::str::from_utf8(&rest[..len]).map_err(|_| BtfError::String {
        offset,
        reason: "not UTF-8",
    })
}

/// A string section being extended (sanitizing adds names such as `__float4`).
#[derive(Clone, Debug, Default)]
pub struct StringTable {
    bytes: Vec<u8>,
}

impl StringTable {
    /// Starts from an existing section; makes sure offset 0 is the empty string.
    pub fn new(bytes: Vec<u8>) -> Self {
        let mut bytes = bytes;
        if bytes.first() != Some(&0) {
            bytes.insert(0, 0);
        }
        Self { bytes }
    }

    /// The string at `offset`.
    pub fn get(&self, offset: u32) -> Result<&str, BtfError> {
        str_at(&self.bytes, offset)
    }

    /// Adds `s` (or finds it when already present at a string start) and returns its offset.
    ///
    /// ```
    /// use kiln_obj::btf::strings::StringTable;
    ///
    /// let mut strings = StringTable::new(b"\0int\0".to_vec());
    /// assert_eq!(strings.add("int"), 1); // already there
    /// let float = strings.add("__float4");
    /// assert_eq!(strings.get(float).unwrap(), "__float4");
    /// assert_eq!(strings.add(""), 0);
    /// ```
    pub fn add(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let needle = s.as_bytes();
        let mut pos = 0;
        while pos < self.bytes.len() {
            let end = self.bytes[pos..]
                .iter()
                .position(|&b| b == 0)
                .map_or(self.bytes.len(), |e| pos + e);
            if &self.bytes[pos..end] == needle {
                return pos as u32;
            }
            pos = end + 1;
        }
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(needle);
        self.bytes.push(0);
        off
    }

    /// The section's bytes, as they go into BTF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The section's bytes, as they go into BTF.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_adds() {
        let mut t = StringTable::new(b"\0int\0foo\0".to_vec());
        assert_eq!(t.get(1).unwrap(), "int");
        assert_eq!(t.add("foo"), 5);
        assert_eq!(t.add("bar"), 9);
        assert_eq!(t.get(9).unwrap(), "bar");
        assert!(str_at(b"\0abc", 1).is_err());
        assert!(str_at(b"\0", 7).is_err());
    }
}
