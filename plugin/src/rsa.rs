//! RSA as this protocol uses it, and nothing more: PKCS#1 v1.5 SHA1 signatures, PKCS#1 v1.5
//! decryption, and reading PKCS#1 / PKCS#8 / SPKI keys.
//!
//! Why not the `rsa` crate: with its big-integer and ASN.1 stack it adds ~130 KiB to the
//! component, half the 256 KiB budget. This module is ~10 KiB. It is checked against the `rsa`
//! crate in the tests (signatures byte for byte, decryption of its ciphertexts, its key encodings).
//!
//! Arithmetic: Montgomery multiplication on 32-bit limbs; exponentiation with a fixed 4-bit
//! window whose table is read in constant time and a final subtraction by mask, so the time does
//! not depend on the secret exponent. Private operations use the CRT and are checked by
//! re-encrypting the result (a faulty computation never leaves the function).

use subtle::{ConditionallySelectable, ConstantTimeEq};

type Limbs = Vec<u32>;

/// Why a key could not be read or an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The DER structure is not the expected key encoding.
    Encoding(&'static str),
    /// The numbers do not form a usable RSA key.
    InvalidKey(&'static str),
    /// The input is not valid for this key (length, range, padding).
    Invalid(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Encoding(m) | Error::InvalidKey(m) | Error::Invalid(m) => f.write_str(m),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Big unsigned integers: little-endian u32 limbs.

fn from_be_bytes(bytes: &[u8], limbs: usize) -> Limbs {
    let mut out = vec![0u32; limbs];
    for (i, b) in bytes.iter().rev().enumerate() {
        out[i / 4] |= u32::from(*b) << (8 * (i % 4));
    }
    out
}

fn to_be_bytes(a: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for i in 0..len {
        let limb = i / 4;
        if limb < a.len() {
            out[len - 1 - i] = (a[limb] >> (8 * (i % 4))) as u8;
        }
    }
    out
}

/// Number of significant bits.
fn bit_len(a: &[u32]) -> usize {
    for i in (0..a.len()).rev() {
        if a[i] != 0 {
            return i * 32 + 32 - a[i].leading_zeros() as usize;
        }
    }
    0
}

/// a < b for equal-length inputs, without early exit.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    let mut borrow = 0u64;
    for i in 0..a.len() {
        let d = u64::from(a[i])
            .wrapping_sub(u64::from(b[i]))
            .wrapping_sub(borrow);
        borrow = (d >> 63) & 1;
    }
    borrow == 1
}

/// a -= b (equal lengths); returns the borrow.
fn sub_in_place(a: &mut [u32], b: &[u32]) -> u32 {
    let mut borrow = 0u64;
    for i in 0..a.len() {
        let d = u64::from(a[i])
            .wrapping_sub(u64::from(b[i]))
            .wrapping_sub(borrow);
        a[i] = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow as u32
}

/// a += b (equal lengths); returns the carry.
fn add_in_place(a: &mut [u32], b: &[u32]) -> u32 {
    let mut carry = 0u64;
    for i in 0..a.len() {
        let s = u64::from(a[i]) + u64::from(b[i]) + carry;
        a[i] = s as u32;
        carry = s >> 32;
    }
    carry as u32
}

/// Full product of a and b.
fn mul(a: &[u32], b: &[u32]) -> Limbs {
    let mut out = vec![0u32; a.len() + b.len()];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u64;
        for (j, &bj) in b.iter().enumerate() {
            let t = u64::from(ai) * u64::from(bj) + u64::from(out[i + j]) + carry;
            out[i + j] = t as u32;
            carry = t >> 32;
        }
        out[i + b.len()] = carry as u32;
    }
    out
}

/// An odd modulus with its Montgomery constants (R = 2^(32·limbs)).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Modulus {
    m: Limbs,
    /// -m⁻¹ mod 2³².
    m_inv: u32,
    /// R² mod m.
    r2: Limbs,
}

impl Modulus {
    fn new(m: Limbs) -> Result<Modulus, Error> {
        if m.is_empty() || m[0] & 1 == 0 || bit_len(&m) < 64 {
            return Err(Error::InvalidKey(
                "a modulus must be odd and at least 64 bits",
            ));
        }
        // Newton's iteration for m⁻¹ mod 2³².
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(m[0].wrapping_mul(inv)));
        }
        let m_inv = inv.wrapping_neg();
        // R² mod m by doubling 1 (2·32·limbs) times modulo m.
        let n = m.len();
        let mut x = vec![0u32; n];
        x[0] = 1;
        for _ in 0..(64 * n) {
            let mut carry = 0u32;
            for limb in x.iter_mut() {
                let next = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if carry == 1 || !less_than(&x, &m) {
                sub_in_place(&mut x, &m);
            }
        }
        Ok(Modulus { m, m_inv, r2: x })
    }

    fn limbs(&self) -> usize {
        self.m.len()
    }

    /// Subtracts m when t (with an extra top word) ≥ m, by mask.
    fn final_reduce(&self, t: &mut [u32], top: u32) {
        let n = self.limbs();
        let mut reduced = t[..n].to_vec();
        let borrow = sub_in_place(&mut reduced, &self.m);
        // Keep the subtraction when top was set or when it did not borrow.
        let keep = subtle::Choice::from((top | (borrow ^ 1)) as u8 & 1);
        for i in 0..n {
            t[i] = u32::conditional_select(&t[i], &reduced[i], keep);
        }
    }

    /// a·b·R⁻¹ mod m (CIOS), for a, b < m.
    fn mont_mul(&self, a: &[u32], b: &[u32]) -> Limbs {
        let n = self.limbs();
        // Exact-length slices let the compiler drop the bounds checks of the inner loops.
        let (a, b, m) = (&a[..n], &b[..n], &self.m[..n]);
        let mut t = vec![0u32; n + 2];
        for &ai in a {
            let ai = u64::from(ai);
            let mut carry = 0u64;
            for (tj, &bj) in t[..n].iter_mut().zip(b) {
                let s = u64::from(*tj) + ai * u64::from(bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[n]) + carry;
            t[n] = s as u32;
            t[n + 1] = (s >> 32) as u32;
            let k = u64::from(t[0].wrapping_mul(self.m_inv));
            let mut carry = (u64::from(t[0]) + k * u64::from(m[0])) >> 32;
            for j in 1..n {
                let s = u64::from(t[j]) + k * u64::from(m[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[n]) + carry;
            t[n - 1] = s as u32;
            t[n] = t[n + 1] + (s >> 32) as u32;
        }
        let top = t[n];
        self.final_reduce(&mut t, top);
        t.truncate(n);
        t
    }

    /// x·R⁻¹ mod m for any x < m·R (up to twice the limbs): Montgomery reduction.
    fn redc_wide(&self, x: &[u32]) -> Limbs {
        let n = self.limbs();
        let mut t = vec![0u32; 2 * n + 1];
        t[..x.len().min(2 * n)].copy_from_slice(&x[..x.len().min(2 * n)]);
        for i in 0..n {
            let k = t[i].wrapping_mul(self.m_inv);
            let mut carry = 0u64;
            for j in 0..n {
                let s = u64::from(t[i + j]) + u64::from(k) * u64::from(self.m[j]) + carry;
                t[i + j] = s as u32;
                carry = s >> 32;
            }
            let mut idx = i + n;
            while carry != 0 && idx < t.len() {
                let s = u64::from(t[idx]) + carry;
                t[idx] = s as u32;
                carry = s >> 32;
                idx += 1;
            }
        }
        let mut out = t[n..2 * n + 1].to_vec();
        let top = out[n];
        self.final_reduce(&mut out, top);
        out.truncate(n);
        out
    }

    /// x mod m for x of up to twice the limbs (and < m·R).
    fn reduce(&self, x: &[u32]) -> Limbs {
        // redc(x) = x·R⁻¹; one Montgomery multiplication by R² gives x·R⁻¹·R²·R⁻¹ = x.
        let once = self.redc_wide(x);
        self.mont_mul(&once, &self.r2)
    }

    fn to_mont(&self, a: &[u32]) -> Limbs {
        self.mont_mul(a, &self.r2)
    }

    fn out_of_mont(&self, a: &[u32]) -> Limbs {
        let mut one = vec![0u32; self.limbs()];
        one[0] = 1;
        self.mont_mul(a, &one)
    }

    /// base^exp mod m, for base < m. Fixed 4-bit windows; the table is read in constant time.
    fn pow(&self, base: &[u32], exp: &[u32]) -> Limbs {
        let n = self.limbs();
        let mut table: Vec<Limbs> = Vec::with_capacity(16);
        table.push(self.to_mont(&{
            let mut one = vec![0u32; n];
            one[0] = 1;
            one
        }));
        table.push(self.to_mont(base));
        for i in 2..16 {
            let next = self.mont_mul(&table[i - 1], &table[1]);
            table.push(next);
        }
        let mut acc = table[0].clone();
        let windows = exp.len() * 8;
        for w in (0..windows).rev() {
            for _ in 0..4 {
                acc = self.mont_mul(&acc, &acc);
            }
            let digit = (exp[w / 8] >> ((w % 8) * 4)) & 0xf;
            // Read every entry; keep the one at `digit` through an all-ones mask.
            let mut chosen = vec![0u32; n];
            for (idx, entry) in table.iter().enumerate() {
                let mask = u32::conditional_select(&0, &u32::MAX, (idx as u32).ct_eq(&digit));
                for (c, &e) in chosen.iter_mut().zip(entry) {
                    *c |= e & mask;
                }
            }
            acc = self.mont_mul(&acc, &chosen);
        }
        self.out_of_mont(&acc)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// An RSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    n: Modulus,
    e: Limbs,
    /// Modulus length in bytes (128 for the 1024-bit keys of this product).
    size: usize,
}

/// An RSA private key, kept with its CRT parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKey {
    public: PublicKey,
    p: Modulus,
    q: Modulus,
    dp: Limbs,
    dq: Limbs,
    /// q⁻¹ mod p, in p's Montgomery form.
    qinv_mont: Limbs,
}

fn integer_limbs(bytes: &[u8]) -> Limbs {
    from_be_bytes(bytes, bytes.len().div_ceil(4).max(1))
}

impl PublicKey {
    fn from_parts(n: &[u8], e: &[u8]) -> Result<PublicKey, Error> {
        let size = n.len();
        if !(64..=1024).contains(&size) {
            return Err(Error::InvalidKey("the modulus must be 512 to 8192 bits"));
        }
        let e = integer_limbs(e);
        if e[0] & 1 == 0 || bit_len(&e) < 2 || bit_len(&e) > 64 {
            return Err(Error::InvalidKey(
                "the public exponent must be odd, above 1 and at most 64 bits",
            ));
        }
        Ok(PublicKey {
            n: Modulus::new(from_be_bytes(n, size.div_ceil(4)))?,
            e,
            size,
        })
    }

    /// The modulus length in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The raw public operation s^e mod n on a `size`-byte input.
    fn public_op(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        if input.len() != self.size {
            return Err(Error::Invalid(
                "input length differs from the modulus length",
            ));
        }
        let x = from_be_bytes(input, self.n.limbs());
        if !less_than(&x, &self.n.m) {
            return Err(Error::Invalid("input is not smaller than the modulus"));
        }
        Ok(to_be_bytes(&self.n.pow(&x, &self.e), self.size))
    }

    /// Verifies a PKCS#1 v1.5 signature over a SHA-1 digest.
    pub fn verify_sha1(&self, digest: &[u8; 20], signature: &[u8]) -> bool {
        let Ok(expected) = emsa_pkcs1_sha1(digest, self.size) else {
            return false;
        };
        match self.public_op(signature) {
            Ok(em) => bool::from(em.ct_eq(&expected)),
            Err(_) => false,
        }
    }

    /// PKCS#1 v1.5 encryption (type 2 padding) with caller-provided nonzero random bytes, for
    /// tests and sandboxes that play the provider's side.
    pub fn encrypt_with_padding(
        &self,
        message: &[u8],
        nonzero_random: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let k = self.size;
        if message.len() + 11 > k || nonzero_random.len() < k - 3 - message.len() {
            return Err(Error::Invalid("message too long for the key"));
        }
        let ps_len = k - 3 - message.len();
        if nonzero_random[..ps_len].contains(&0) {
            return Err(Error::Invalid("padding bytes must be nonzero"));
        }
        let mut em = Vec::with_capacity(k);
        em.extend_from_slice(&[0, 2]);
        em.extend_from_slice(&nonzero_random[..ps_len]);
        em.push(0);
        em.extend_from_slice(message);
        self.public_op(&em)
    }
}

impl PrivateKey {
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn from_parts(parts: [&[u8]; 8]) -> Result<PrivateKey, Error> {
        let [n, e, _d, p, q, dp, dq, qinv] = parts;
        let public = PublicKey::from_parts(n, e)?;
        let p_mod = Modulus::new(integer_limbs(p))?;
        let q_mod = Modulus::new(integer_limbs(q))?;
        // The CRT reduction below needs p and q of the same limb count (all usual key generators).
        if p_mod.limbs() != q_mod.limbs() || public.n.limbs() > 2 * p_mod.limbs() {
            return Err(Error::InvalidKey("p and q must have the same size"));
        }
        // p·q must be n.
        let product = mul(&p_mod.m, &q_mod.m);
        let n_limbs = public.n.limbs();
        if bit_len(&product) != bit_len(&public.n.m)
            || product[..n_limbs] != public.n.m[..]
            || product[n_limbs..].iter().any(|&l| l != 0)
        {
            return Err(Error::InvalidKey("p·q is not the modulus"));
        }
        let qinv = integer_limbs(qinv);
        let qinv = p_mod.reduce(&pad(&qinv, 2 * p_mod.limbs()));
        let key = PrivateKey {
            qinv_mont: p_mod.to_mont(&qinv),
            public,
            p: p_mod,
            q: q_mod,
            dp: integer_limbs(dp),
            dq: integer_limbs(dq),
        };
        Ok(key)
    }

    /// Refuses a key whose CRT parameters do not belong together (one private operation and its
    /// check). Settings validation calls it; the protocol calls skip it, as every private
    /// operation is checked anyway.
    pub fn check(&self) -> Result<(), Error> {
        let mut probe = vec![2u8; self.public.size];
        probe[0] = 0;
        self.private_op(&probe)
            .map(|_| ())
            .map_err(|_| Error::InvalidKey("the CRT parameters do not match the key"))
    }

    /// m = c^d mod n via the CRT, without the check.
    fn private_op_unchecked(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let n = &self.public.n;
        if input.len() != self.public.size {
            return Err(Error::Invalid(
                "input length differs from the modulus length",
            ));
        }
        let c = from_be_bytes(input, n.limbs());
        if !less_than(&c, &n.m) {
            return Err(Error::Invalid("input is not smaller than the modulus"));
        }
        let cp = self.p.reduce(&pad(&c, 2 * self.p.limbs()));
        let cq = self.q.reduce(&pad(&c, 2 * self.q.limbs()));
        let m1 = self.p.pow(&cp, &self.dp);
        let m2 = self.q.pow(&cq, &self.dq);
        // h = qinv·(m1 − m2) mod p
        let m2p = self.p.reduce(&pad(&m2, 2 * self.p.limbs()));
        let mut diff = m1;
        let borrow = sub_in_place(&mut diff, &m2p);
        let mut plus_p = diff.clone();
        add_in_place(&mut plus_p, &self.p.m);
        let wrap = subtle::Choice::from(borrow as u8);
        for i in 0..diff.len() {
            diff[i] = u32::conditional_select(&diff[i], &plus_p[i], wrap);
        }
        let h = self.p.mont_mul(&self.qinv_mont, &diff);
        // m = m2 + h·q
        let hq = mul(&h, &self.q.m);
        let mut m = pad(&m2, hq.len());
        add_in_place(&mut m, &hq);
        Ok(to_be_bytes(&m, self.public.size))
    }

    /// The private operation, checked by re-encrypting the result.
    fn private_op(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let out = self.private_op_unchecked(input)?;
        let back = self.public.public_op(&out)?;
        if !bool::from(back.ct_eq(input)) {
            return Err(Error::Invalid(
                "the private-key computation failed its check",
            ));
        }
        Ok(out)
    }

    /// Signs a SHA-1 digest (PKCS#1 v1.5).
    pub fn sign_sha1(&self, digest: &[u8; 20]) -> Result<Vec<u8>, Error> {
        let em = emsa_pkcs1_sha1(digest, self.public.size)?;
        self.private_op(&em)
    }

    /// Decrypts one PKCS#1 v1.5 (type 2) block. The padding is checked without early exits.
    pub fn decrypt(&self, block: &[u8]) -> Result<Vec<u8>, Error> {
        let em = self.private_op(block)?;
        // EM = 00 02 PS(≥ 8 nonzero bytes) 00 M
        let mut good = em[0].ct_eq(&0) & em[1].ct_eq(&2);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, b) in em.iter().enumerate().skip(2) {
            let zero = b.ct_eq(&0);
            let first_zero = zero & !found;
            index.conditional_assign(&(i as u32), first_zero);
            found |= zero;
        }
        good &= found;
        good &= subtle::Choice::from(u8::from(index >= 10));
        if !bool::from(good) {
            return Err(Error::Invalid("the block does not decrypt with this key"));
        }
        Ok(em[index as usize + 1..].to_vec())
    }
}

fn pad(a: &[u32], len: usize) -> Limbs {
    let mut out = a.to_vec();
    out.resize(len.max(a.len()), 0);
    out
}

/// EMSA-PKCS1-v1_5 with SHA-1: 00 01 FF… 00 DigestInfo(SHA-1, digest).
fn emsa_pkcs1_sha1(digest: &[u8; 20], k: usize) -> Result<Vec<u8>, Error> {
    const PREFIX: [u8; 15] = [
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
    ];
    let t_len = PREFIX.len() + digest.len();
    if k < t_len + 11 {
        return Err(Error::Invalid("the key is too short for a SHA-1 signature"));
    }
    let mut em = vec![0xffu8; k];
    em[0] = 0;
    em[1] = 1;
    em[k - t_len - 1] = 0;
    em[k - t_len..k - digest.len()].copy_from_slice(&PREFIX);
    em[k - digest.len()..].copy_from_slice(digest);
    Ok(em)
}

// ---------------------------------------------------------------------------------------------
// DER: just the structures of RSA keys.

struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// Reads one element with the given tag; returns its contents.
    fn take(&mut self, tag: u8) -> Result<&'a [u8], Error> {
        let b = self.0;
        if b.len() < 2 || b[0] != tag {
            return Err(Error::Encoding("unexpected DER element"));
        }
        let (len, header) = match b[1] {
            l if l < 0x80 => (l as usize, 2),
            0x81..=0x84 => {
                let count = (b[1] & 0x7f) as usize;
                if b.len() < 2 + count {
                    return Err(Error::Encoding("truncated DER length"));
                }
                let mut len = 0usize;
                for &x in &b[2..2 + count] {
                    len = (len << 8) | x as usize;
                }
                (len, 2 + count)
            }
            _ => return Err(Error::Encoding("unsupported DER length")),
        };
        let end = header
            .checked_add(len)
            .ok_or(Error::Encoding("DER length overflow"))?;
        if end > b.len() {
            return Err(Error::Encoding("truncated DER element"));
        }
        self.0 = &b[end..];
        Ok(&b[header..end])
    }

    /// A non-negative INTEGER's magnitude, without leading zeros.
    fn integer(&mut self) -> Result<&'a [u8], Error> {
        let v = self.take(0x02)?;
        if v.is_empty() || v[0] & 0x80 != 0 {
            return Err(Error::Encoding("negative or empty INTEGER"));
        }
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len() - 1);
        Ok(&v[start..])
    }

    fn done(&self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Encoding("trailing data after the key"))
        }
    }
}

/// rsaEncryption, 1.2.840.113549.1.1.1
const RSA_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn algorithm_is_rsa(alg: &[u8]) -> Result<(), Error> {
    let mut d = Der(alg);
    if d.take(0x06)? != RSA_OID {
        return Err(Error::Encoding("the key is not an RSA key"));
    }
    if !d.0.is_empty() {
        d.take(0x05)?;
    }
    d.done()
}

/// PKCS#1 `RSAPrivateKey`.
pub fn private_key_from_pkcs1_der(der: &[u8]) -> Result<PrivateKey, Error> {
    let mut outer = Der(der);
    let mut seq = Der(outer.take(0x30)?);
    outer.done()?;
    if seq.integer()? != [0] {
        return Err(Error::Encoding(
            "only two-prime RSA keys (version 0) are supported",
        ));
    }
    let mut parts: [&[u8]; 8] = [&[]; 8];
    for part in parts.iter_mut() {
        *part = seq.integer()?;
    }
    PrivateKey::from_parts(parts)
}

/// PKCS#8 `PrivateKeyInfo` holding an RSA key.
pub fn private_key_from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, Error> {
    let mut outer = Der(der);
    let mut seq = Der(outer.take(0x30)?);
    outer.done()?;
    seq.integer()?;
    algorithm_is_rsa(seq.take(0x30)?)?;
    private_key_from_pkcs1_der(seq.take(0x04)?)
}

/// PKCS#1 `RSAPublicKey`.
pub fn public_key_from_pkcs1_der(der: &[u8]) -> Result<PublicKey, Error> {
    let mut outer = Der(der);
    let mut seq = Der(outer.take(0x30)?);
    outer.done()?;
    let n = seq.integer()?;
    let e = seq.integer()?;
    seq.done()?;
    PublicKey::from_parts(n, e)
}

/// X.509 `SubjectPublicKeyInfo` holding an RSA key.
pub fn public_key_from_spki_der(der: &[u8]) -> Result<PublicKey, Error> {
    let mut outer = Der(der);
    let mut seq = Der(outer.take(0x30)?);
    outer.done()?;
    algorithm_is_rsa(seq.take(0x30)?)?;
    let bits = seq.take(0x03)?;
    if bits.first() != Some(&0) {
        return Err(Error::Encoding("the public key BIT STRING has unused bits"));
    }
    public_key_from_pkcs1_der(&bits[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montgomery_matches_schoolbook_on_small_numbers() {
        // m = 2^64 + 13 (odd, 3 limbs); compare a·b mod m with u128 arithmetic.
        let m: u128 = (1u128 << 64) + 13;
        let limbs = |x: u128| vec![x as u32, (x >> 32) as u32, (x >> 64) as u32];
        let value =
            |l: &[u32]| u128::from(l[0]) | (u128::from(l[1]) << 32) | (u128::from(l[2]) << 64);
        let md = Modulus::new(limbs(m)).unwrap();
        for (a, b) in [
            (3u128, 5u128),
            (m - 1, m - 1),
            (123_456_789_012_345, 987_654_321_098_765),
            (m - 2, 2),
        ] {
            let prod = md.out_of_mont(&md.mont_mul(&md.to_mont(&limbs(a)), &md.to_mont(&limbs(b))));
            // (a·b) mod m with u128, splitting to avoid overflow.
            let expected = {
                let mut r = 0u128;
                let mut x = a % m;
                let mut y = b % m;
                while y > 0 {
                    if y & 1 == 1 {
                        r = (r + x) % m;
                    }
                    x = (x << 1) % m;
                    y >>= 1;
                }
                r
            };
            assert_eq!(value(&prod), expected, "{a} * {b}");
        }
        // pow: 3^(m-1) mod m via repeated multiplication of small exponent.
        let p = md.pow(&limbs(3), &[5, 0]);
        assert_eq!(value(&p), 243);
        // reduce of a wide number: (m + 7) mod m = 7
        let wide = [limbs(m + 7), vec![0, 0, 0]].concat();
        assert_eq!(value(&md.reduce(&wide)), 7);
    }

    #[test]
    fn der_rejects_malformed_input() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x02],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x31, 0x00],
        ] {
            assert!(private_key_from_pkcs1_der(bad).is_err());
            assert!(public_key_from_spki_der(bad).is_err());
        }
    }

    /// The same operations as the `rsa` crate, on freshly generated keys of both usual sizes.
    #[test]
    fn agrees_with_the_rsa_crate() {
        use ::rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        use ::rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
        use ::rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey};
        use sha1::{Digest, Sha1};
        let mut rng = rand_core::OsRng;
        for bits in [1024usize, 2048] {
            let reference = RsaPrivateKey::new(&mut rng, bits).unwrap();
            let public_ref = reference.to_public_key();
            let key =
                private_key_from_pkcs8_der(reference.to_pkcs8_der().unwrap().as_bytes()).unwrap();
            let key1 =
                private_key_from_pkcs1_der(reference.to_pkcs1_der().unwrap().as_bytes()).unwrap();
            assert_eq!(key, key1);
            key.check().unwrap();
            let public =
                public_key_from_spki_der(public_ref.to_public_key_der().unwrap().as_bytes())
                    .unwrap();
            let public1 =
                public_key_from_pkcs1_der(public_ref.to_pkcs1_der().unwrap().as_bytes()).unwrap();
            assert_eq!(&public, key.public_key());
            assert_eq!(public, public1);
            for i in 0..8u8 {
                let message = vec![i; 7 * i as usize + 1];
                let digest: [u8; 20] = Sha1::digest(&message).into();
                let ours = key.sign_sha1(&digest).unwrap();
                let theirs = reference
                    .sign(Pkcs1v15Sign::new::<Sha1>(), &digest)
                    .unwrap();
                assert_eq!(ours, theirs, "{bits}-bit signature {i}");
                assert!(public.verify_sha1(&digest, &theirs));
                let mut tampered = theirs.clone();
                tampered[i as usize] ^= 1;
                assert!(!public.verify_sha1(&digest, &tampered));
                let cipher = public_ref
                    .encrypt(&mut rng, Pkcs1v15Encrypt, &message)
                    .unwrap();
                assert_eq!(
                    key.decrypt(&cipher).unwrap(),
                    message,
                    "{bits}-bit decrypt {i}"
                );
                // Our padding decrypts with theirs.
                let random = vec![0x5au8; key.public_key().size()];
                let ours_cipher = public.encrypt_with_padding(&message, &random).unwrap();
                assert_eq!(
                    reference.decrypt(Pkcs1v15Encrypt, &ours_cipher).unwrap(),
                    message
                );
            }
            // A block that is not a valid type-2 encryption is refused.
            let not_encrypted = key.sign_sha1(&[1u8; 20]).unwrap();
            assert!(key.decrypt(&not_encrypted).is_err());
            // Wrong sizes and out-of-range inputs are refused, not panics.
            assert!(key.decrypt(&[1u8; 3]).is_err());
            assert!(key.decrypt(&vec![0xffu8; key.public_key().size()]).is_err());
            assert!(!public.verify_sha1(&[0u8; 20], &[]));
        }
    }
}
