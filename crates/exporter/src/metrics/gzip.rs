//! gzip for `/metrics` without compressing each scrape: pieces compressed once as sync-flushed raw
//! DEFLATE, joined with the few dynamic values as stored blocks into one gzip member, its CRC-32
//! combined from the pieces' CRCs without their text.

use flate2::{Compress, Compression, FlushCompress};

pub(super) fn compressor(compress: &mut Option<Compress>) -> &mut Compress {
    // Raw DEFLATE (no zlib header): the pieces are concatenated inside one gzip member. The level
    // matters little for time (each piece is compressed once per change) and more for size.
    compress.get_or_insert_with(|| Compress::new(Compression::default(), false))
}

/// `input` as raw DEFLATE blocks ended by a sync flush: byte-aligned and not final, so pieces
/// compressed independently concatenate into one valid stream. Falls back to stored blocks.
pub(super) fn deflate(compress: &mut Compress, input: &[u8]) -> Vec<u8> {
    if input.is_empty() {
        return Vec::new();
    }
    compress.reset();
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    // Each round either consumes input or fills the output, which then grows: bounded.
    for _ in 0..64 {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        if compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        let done = usize::try_from(compress.total_in()).is_ok_and(|n| n == input.len());
        // The flush is complete once all input is in and the output was not filled up.
        if done && out.len() < out.capacity() {
            return out;
        }
    }
    let mut stored = Vec::with_capacity(input.len() + 16);
    stored_blocks(&mut stored, input);
    stored
}

/// `data` as DEFLATE stored (uncompressed) blocks, not final (RFC 1951 §3.2.4): a byte-aligned
/// header byte 0, then LEN and its ones' complement, little-endian, then the bytes.
pub(super) fn stored_blocks(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.chunks(usize::from(u16::MAX)) {
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// A piece's CRC-32 and the operator that appends it to a running CRC: x^(8·len) modulo the
/// CRC-32 polynomial. A gzip scrape then extends its checksum over a cached piece with one
/// multiplication instead of reading the piece's text (which is not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CrcPiece {
    pub(super) crc: u32,
    pub(super) shift: u32,
}

impl CrcPiece {
    pub(super) fn of(bytes: &[u8]) -> CrcPiece {
        CrcPiece {
            crc: crc32fast::hash(bytes),
            shift: crc32::x8n(bytes.len() as u64),
        }
    }
}

/// CRC-32 (reflected, polynomial 0xEDB88320) arithmetic for combining checksums, as zlib's
/// `crc32_combine` does it: polynomials modulo P, bit-reversed, x^0 = 1 << 31.
pub(super) mod crc32 {
    const POLY: u32 = 0xedb8_8320;

    /// a·b modulo P.
    pub(super) const fn mul(a: u32, mut b: u32) -> u32 {
        let mut a = a;
        let mut p = 0;
        while a != 0 {
            if a & (1 << 31) != 0 {
                p ^= b;
            }
            a <<= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
        p
    }

    /// x^(2^k) modulo P, for k in 0..32.
    const X2N: [u32; 32] = {
        let mut table = [0; 32];
        let mut p = 1 << 30; // x^1
        let mut k = 0;
        while k < 32 {
            table[k] = p;
            p = mul(p, p);
            k += 1;
        }
        table
    };

    /// x^(8n) modulo P: the operator that appends `n` bytes.
    pub(super) fn x8n(mut n: u64) -> u32 {
        let mut p = 1 << 31; // x^0
        let mut k = 3;
        while n != 0 {
            if n & 1 != 0 {
                p = mul(X2N[k & 31], p);
            }
            n >>= 1;
            k += 1;
        }
        p
    }

    /// The CRC-32 of A‖B from that of A and B's [`CrcPiece`](super::CrcPiece).
    pub(super) fn combine(crc_a: u32, b: super::CrcPiece) -> u32 {
        mul(b.shift, crc_a) ^ b.crc
    }
}

/// One gzip member (RFC 1952) assembled from DEFLATE pieces.
pub(super) struct Gzip {
    out: Vec<u8>,
    /// The CRC-32 and length (mod 2^32) of the uncompressed bytes so far.
    crc: u32,
    len: u32,
}

impl Gzip {
    pub(super) fn new(capacity: usize) -> Gzip {
        let mut out = Vec::with_capacity(capacity);
        // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        Gzip {
            out,
            crc: 0,
            len: 0,
        }
    }

    /// `len` bytes with checksum `crc`, already compressed as `deflated` by [`deflate`].
    pub(super) fn compressed(&mut self, len: usize, crc: CrcPiece, deflated: &[u8]) {
        self.out.extend_from_slice(deflated);
        if len > 0 {
            self.crc = crc32::combine(self.crc, crc);
            self.len = self.len.wrapping_add(len as u32);
        }
    }

    pub(super) fn stored(&mut self, data: &[u8]) {
        stored_blocks(&mut self.out, data);
        let mut hasher = crc32fast::Hasher::new_with_initial(self.crc);
        hasher.update(data);
        self.crc = hasher.finalize();
        self.len = self.len.wrapping_add(data.len() as u32);
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        // A final, empty block with fixed Huffman codes, then CRC-32 and length mod 2^32.
        self.out.extend_from_slice(&[0x03, 0x00]);
        self.out.extend_from_slice(&self.crc.to_le_bytes());
        self.out.extend_from_slice(&self.len.to_le_bytes());
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{DeflateDecoder, GzDecoder, MultiGzDecoder};
    use std::io::Read;

    fn gunzip_single(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn gunzip_multi(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sync_flushed_pieces_and_stored_blocks_form_one_gzip_member() {
        let mut compress = None;
        let a = b"healthlake_export_jobs{datastore_id=\"a\"} 1.0\n".repeat(50);
        let b = b"something else entirely\n".to_vec();
        let mut gz = Gzip::new(0);
        gz.compressed(
            a.len(),
            CrcPiece::of(&a),
            &deflate(compressor(&mut compress), &a),
        );
        gz.stored(b"12.5\n");
        gz.stored(&[]);
        gz.compressed(
            b.len(),
            CrcPiece::of(&b),
            &deflate(compressor(&mut compress), &b),
        );
        gz.compressed(
            0,
            CrcPiece::of(&[]),
            &deflate(compressor(&mut compress), &[]),
        );
        let bytes = gz.finish();
        let mut expected = a.clone();
        expected.extend_from_slice(b"12.5\n");
        expected.extend_from_slice(&b);
        assert_eq!(gunzip_single(&bytes), expected);
        assert_eq!(gunzip_multi(&bytes), expected);
        assert!(bytes.len() < expected.len() / 4, "{} bytes", bytes.len());
    }

    #[test]
    fn large_pieces_and_stored_blocks_over_64_kib_round_trip() {
        let mut rng = fastrand::Rng::with_seed(5);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.u8(b'a'..=b'z')).collect();
        let mut compress = None;
        let deflated = deflate(compressor(&mut compress), &noise);
        // Not final on its own: end it with the final empty block, as `Gzip::finish` does.
        let mut ended = deflated.clone();
        ended.extend_from_slice(&[0x03, 0x00]);
        let mut raw = Vec::new();
        DeflateDecoder::new(&ended[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, noise);
        let mut gz = Gzip::new(0);
        gz.stored(&noise);
        gz.compressed(noise.len(), CrcPiece::of(&noise), &deflated);
        let mut expected = noise.clone();
        expected.extend_from_slice(&noise);
        assert_eq!(gunzip_single(&gz.finish()), expected);
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_concatenation() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let a: Vec<u8> = (0..rng.usize(0..3000)).map(|_| rng.u8(..)).collect();
            let b: Vec<u8> = (0..rng.usize(0..3000)).map(|_| rng.u8(..)).collect();
            let whole = [a.as_slice(), b.as_slice()].concat();
            let combined = crc32::combine(crc32fast::hash(&a), CrcPiece::of(&b));
            assert_eq!(combined, crc32fast::hash(&whole));
        }
        let big = vec![7u8; 1 << 20];
        let combined = crc32::combine(crc32fast::hash(b"x"), CrcPiece::of(&big));
        assert_eq!(combined, crc32fast::hash(&[b"x".as_slice(), &big].concat()));
        let mut hasher = crc32fast::Hasher::new_with_initial(crc32fast::hash(b"abc"));
        hasher.update(b"def");
        assert_eq!(hasher.finalize(), crc32fast::hash(b"abcdef"));
    }
}
