//! Protobuf wire format, read in place: the few primitives the borrowed OTLP logs decoder
//! ([`super::logs`]) needs. Every function returns `None` on input it cannot read; callers then
//! hand the bytes to prost, whose error message is the one the client sees.

/// A field's wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// A cursor over protobuf bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    #[inline]
    pub fn varint(&mut self) -> Option<u64> {
        // Keys and most lengths and values here fit in one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Some(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The tenth byte may only carry the top bit.
                if i == 9 && byte > 1 {
                    return None;
                }
                self.bytes = &self.bytes[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// The next field's number and wire type (groups, deprecated, are not read here).
    pub fn key(&mut self) -> Option<(u32, WireType)> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            _ => return None,
        };
        let field = u32::try_from(key >> 3).ok().filter(|f| *f > 0)?;
        Some((field, wire))
    }

    pub fn fixed64(&mut self) -> Option<u64> {
        let (head, rest) = self.bytes.split_first_chunk::<8>()?;
        self.bytes = rest;
        Some(u64::from_le_bytes(*head))
    }

    pub fn fixed32(&mut self) -> Option<u32> {
        let (head, rest) = self.bytes.split_first_chunk::<4>()?;
        self.bytes = rest;
        Some(u32::from_le_bytes(*head))
    }

    /// A length-delimited field's bytes.
    pub fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let bytes = self.len_delimited()?;
        if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).ok()
    }

    /// Skips a field of `wire` type (an unknown field).
    pub fn skip(&mut self, wire: WireType) -> Option<()> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.fixed64().map(drop),
            WireType::Len => self.len_delimited().map(drop),
            WireType::Fixed32 => self.fixed32().map(drop),
        }
    }

    /// Where this reader is in `whole` (which it must be a suffix of).
    pub fn offset_in(&self, whole: &[u8]) -> usize {
        whole.len() - self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::encoding::encode_varint;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Some(value));
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0x80; 11]).varint(), None);
        assert_eq!(Reader::new(&[0xff; 9]).varint(), None, "cut short");
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(Reader::new(&overflow).varint(), None);
    }

    #[test]
    fn lengths_past_the_end_and_group_wire_types_are_refused() {
        assert_eq!(Reader::new(&[5, b'a', b'b']).len_delimited(), None);
        assert_eq!(Reader::new(&[2, 0xff, 0xfe]).str(), None, "invalid UTF-8");
        assert_eq!(Reader::new(&[(1 << 3) | 3]).key(), None, "group start");
        assert_eq!(Reader::new(&[2]).key(), None, "field 0");
        let mut r = Reader::new(&[(7 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.key(), Some((7, WireType::Fixed64)));
        assert_eq!(r.fixed64(), Some(0x0807_0605_0403_0201));
        assert_eq!(r.fixed32(), None);
    }
}
