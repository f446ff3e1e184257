//! Standard base64 (RFC 4648, with padding), strict on input. Written out because the base64
//! crate's generic engine costs the component ~10 KiB; tested against that crate.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes padded base64; refuses bad characters, bad length, bad padding and non-zero pad bits.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    if !input.len().is_multiple_of(4) {
        return Err("base64 length is not a multiple of 4");
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.len() / 4;
    for (ci, chunk) in input.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && ci + 1 != chunks) {
            return Err("misplaced base64 padding");
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c).ok_or("invalid base64 character")?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return Err("non-canonical base64 padding bits");
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn agrees_with_the_base64_crate() {
        let engine = base64::engine::general_purpose::STANDARD;
        for len in 0..70usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let ours = encode(&data);
            assert_eq!(ours, engine.encode(&data));
            assert_eq!(decode(ours.as_bytes()).unwrap(), data);
        }
        for bad in [
            "A",
            "AB=C",
            "A===",
            "AB==CD==",
            "ab!d",
            "AB=="[..3].as_ref(),
            "AB\n==",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
            assert!(engine.decode(bad).is_err(), "{bad:?} (reference)");
        }
        assert!(decode(b"AB==").is_err(), "non-zero pad bits");
    }
}
