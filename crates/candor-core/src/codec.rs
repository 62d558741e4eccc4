//! Canonical byte encoding: big-endian integers, fixed-size arrays raw,
//! variable-length fields with an explicit length prefix. Decoders are strict:
//! a short read, an over-long length or trailing bytes is an error, so every
//! object has exactly one encoding.

use crate::error::{Result, decode_err};

/// Appends canonical encodings to a buffer.
#[derive(Default, Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// `u8` length then bytes. Panics if `v` is longer than 255 bytes: only
    /// used for protocol constants and validated namespaces.
    pub fn str8(&mut self, v: &[u8]) -> &mut Self {
        let len = u8::try_from(v.len()).expect("str8 field longer than 255 bytes");
        self.u8(len).raw(v)
    }
    /// `u32` length then bytes.
    pub fn bytes32(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("field longer than 4 GiB");
        self.u32(len).raw(v)
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads a canonical encoding; every method fails instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(decode_err(
                self.what,
                format!("truncated: need {n} bytes, have {}", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn str8(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    /// A `u32`-length-prefixed field of at most `max` bytes.
    pub fn bytes32(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(decode_err(
                self.what,
                format!("field of {n} bytes exceeds limit {max}"),
            ));
        }
        self.take(n)
    }
    /// Expects a fixed protocol constant (suite, purpose).
    pub fn expect_str8(&mut self, expected: &[u8]) -> Result<()> {
        let got = self.str8()?;
        if got != expected {
            return Err(decode_err(
                self.what,
                format!(
                    "expected tag {:?}, found {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(got)
                ),
            ));
        }
        Ok(())
    }
    /// Fails if any byte is left: trailing bytes would make encodings malleable.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(decode_err(
                self.what,
                format!("{} trailing bytes", self.buf.len()),
            ))
        }
    }
}
