//! The program tag the kernel will report, computed without loading.
//!
//! The kernel hashes the instructions as submitted, with the map references
//! of `ld_imm64` zeroed (fds differ from load to load). Kernels up to 6.17
//! use SHA-1; later ones SHA-256 (the digest that signed programs need). The
//! tag is the first 8 bytes of either. Comparing it with the live program's
//! tag tells whether the code changed, without any state kept by Kiln.

use kiln_obj::Insn;
use kiln_obj::insn::{PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use sha2::Digest;

/// Both candidate tags of `insns` (already relocated; map fds may be anything).
pub fn candidate_tags(insns: &[Insn]) -> Vec<[u8; 8]> {
    let bytes = canonical_bytes(insns);
    let sha1 = sha1(&bytes);
    let sha256 = sha2::Sha256::digest(&bytes);
    let mut a = [0u8; 8];
    a.copy_from_slice(&sha1[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&sha256[..8]);
    vec![a, b]
}

/// The bytes the kernel hashes: map fd immediates (and the second half of
/// their `ld_imm64`) zeroed.
fn canonical_bytes(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * Insn::SIZE);
    let mut was_ld_map = false;
    for insn in insns {
        let mut i = *insn;
        if !was_ld_map && i.is_ld_imm64() && matches!(i.src_reg(), PSEUDO_MAP_FD | PSEUDO_MAP_VALUE)
        {
            was_ld_map = true;
            i.imm = 0;
        } else if was_ld_map && i.code == 0 && i.regs == 0 && i.off == 0 {
            was_ld_map = false;
            i.imm = 0;
        } else {
            was_ld_map = false;
        }
        out.extend_from_slice(&i.to_bytes(kiln_obj::ByteOrder::native()));
    }
    out
}

/// SHA-1 (FIPS 180-4). Only used to predict kernel tags, never for security.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn map_fds_do_not_change_the_tag() {
        let mut ld = Insn {
            code: 0x18,
            regs: 0x11,
            off: 0,
            imm: 5,
        };
        let hi = Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0,
        };
        let exit = Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        };
        let a = candidate_tags(&[ld, hi, exit]);
        ld.imm = 9;
        let b = candidate_tags(&[ld, hi, exit]);
        assert_eq!(a, b);
        let other = candidate_tags(&[
            Insn {
                code: 0xb7,
                regs: 0,
                off: 0,
                imm: 1,
            },
            exit,
        ]);
        assert_ne!(a, other);
    }
}
