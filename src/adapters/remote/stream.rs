//! Reading a `stream` script's output (`script::stream`) as it arrives, chunk by chunk, in
//! bounded memory: base64 decoded into the caller's sink and hashed on the way, whatever the size
//! of the file. Chunks may break anywhere (inside a quad, a CRLF, the `sha256` line); the base64 is
//! taken without regard to where its lines break (a console host may wrap a long line anywhere).
//! The last line must be the server's `sha256 HEX` line: without it the stream was cut short.
//! Whether the two hashes agree is the caller's to judge (it names the file).

use std::io::Write;

use base64::Engine;

use sha2::{Digest, Sha256};

use super::output::{bad, hash_line, BadOutput};

/// What a `stream` script's output held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    Absent,
    Done {
        /// What the server hashed as it read.
        server_sha256: String,
        /// What arrived here, hashed as it was decoded.
        local_sha256: String,
        bytes: u64,
    },
}

/// A line's first bytes are held until they tell what the line is: `sha256 ` (7 bytes) starts the
/// hash line, `absent` (6) is a whole first line, anything else is base64 (which has no space).
const DECIDED_AFTER: usize = 8;

/// The longest hash line taken: `sha256 `, 64 hex digits, and room for what a console adds.
const HASH_LINE_MAX: usize = 128;

/// What the line being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Its first bytes, held in `head`, do not tell yet.
    Undecided,
    /// Base64: fed to the quad decoder as it comes.
    Data,
    /// The `sha256 HEX` line, held in `head` until its end.
    Hash,
}

/// Decodes a `stream` script's stdout pushed in chunks into `sink`, hashing what it writes.
/// Holds a few bytes between chunks (a line's start, a part quad, a CR), never the file. Its
/// `Write` side is what the WinRM client delivers stdout to; the first error is kept for
/// `finish`, and everything after it is ignored.
pub struct Decoder<W: Write> {
    sink: W,
    hasher: Sha256,
    quads: QuadDecoder,
    bytes: u64,
    /// The number of the line being read (from 1, blank lines counted).
    line: usize,
    kind: Line,
    head: Vec<u8>,
    /// A CR that ended the last chunk: a line end if LF follows.
    cr: bool,
    /// Whether a non-blank line was read before this one.
    seen: bool,
    absent: bool,
    server_sha256: Option<String>,
    failed: Option<BadOutput>,
}

impl<W: Write> Decoder<W> {
    pub fn new(sink: W) -> Decoder<W> {
        Decoder {
            sink,
            hasher: Sha256::new(),
            quads: QuadDecoder::default(),
            bytes: 0,
            line: 1,
            kind: Line::Undecided,
            head: Vec::new(),
            cr: false,
            seen: false,
            absent: false,
            server_sha256: None,
            failed: None,
        }
    }

    /// Takes the next piece of stdout.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BadOutput> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.take(chunk);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn take(&mut self, mut chunk: &[u8]) -> Result<(), BadOutput> {
        while !chunk.is_empty() {
            if self.cr {
                self.cr = false;
                if chunk[0] == b'\n' {
                    self.end_line()?;
                    chunk = &chunk[1..];
                    continue;
                }
                // A CR inside a line is not base64: the decoder names it.
                self.line_bytes(b"\r")?;
            }
            let stop = chunk.iter().position(|b| matches!(b, b'\r' | b'\n'));
            let Some(at) = stop else {
                return self.line_bytes(chunk);
            };
            self.line_bytes(&chunk[..at])?;
            if chunk[at] == b'\r' {
                self.cr = true;
            } else {
                self.end_line()?;
            }
            chunk = &chunk[at + 1..];
        }
        Ok(())
    }

    /// Bytes of the current line (no line end among them).
    fn line_bytes(&mut self, bytes: &[u8]) -> Result<(), BadOutput> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self.kind {
            Line::Data => self.data(bytes),
            Line::Hash => {
                if self.head.len() + bytes.len() > HASH_LINE_MAX {
                    return Err(bad(self.line, "the sha256 line goes on past a hash"));
                }
                self.head.extend_from_slice(bytes);
                Ok(())
            }
            Line::Undecided => {
                let room = DECIDED_AFTER
                    .saturating_sub(self.head.len())
                    .min(bytes.len());
                self.head.extend_from_slice(&bytes[..room]);
                if self.head.len() < DECIDED_AFTER {
                    return Ok(());
                }
                self.decide()?;
                self.line_bytes(&bytes[room..])
            }
        }
    }

    /// Decides what the current line is from its first bytes (all of them when it is short) and
    /// feeds a data line's held bytes on.
    fn decide(&mut self) -> Result<(), BadOutput> {
        self.before_a_line()?;
        let head = std::mem::take(&mut self.head);
        if head.starts_with(b"sha256 ") {
            if !self.quads.pending.is_empty() {
                return Err(bad(self.line, "the base64 before it ends inside a quad"));
            }
            self.kind = Line::Hash;
            self.head = head;
            self.seen = true;
            return Ok(());
        }
        self.kind = Line::Data;
        self.seen = true;
        self.data(&head)
    }

    /// A non-blank line begins: nothing may follow `absent` or the hash line.
    fn before_a_line(&self) -> Result<(), BadOutput> {
        if self.absent {
            return Err(bad(self.line, "output after `absent`"));
        }
        if self.server_sha256.is_some() {
            return Err(bad(self.line, "output after the sha256 line"));
        }
        Ok(())
    }

    fn data(&mut self, text: &[u8]) -> Result<(), BadOutput> {
        let decoded = self
            .quads
            .push(text)
            .map_err(|e| bad(self.line, format!("not base64: {e}")))?;
        self.hasher.update(&decoded);
        self.sink
            .write_all(&decoded)
            .map_err(|e| BadOutput::Write(e.to_string()))?;
        self.bytes += decoded.len() as u64;
        Ok(())
    }

    /// The current line ended.
    fn end_line(&mut self) -> Result<(), BadOutput> {
        if self.kind == Line::Undecided && !self.head.is_empty() {
            if self.head == b"absent" && !self.seen {
                self.head.clear();
                self.absent = true;
                self.seen = true;
            } else {
                self.decide()?;
            }
        }
        if self.kind == Line::Hash {
            let line = std::mem::take(&mut self.head);
            let text = std::str::from_utf8(&line).map_err(|_| bad(self.line, "not UTF-8"))?;
            self.server_sha256 = Some(hash_line(self.line, text)?);
        }
        self.kind = Line::Undecided;
        self.line += 1;
        Ok(())
    }

    /// The output ended: the last line is read, the sink flushed. Returns what arrived and the
    /// sink; the first error of any push, if there was one.
    pub fn finish(mut self) -> Result<(Streamed, W), BadOutput> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        // The last line, with or without its line end (a CR alone ends it too).
        self.cr = false;
        self.end_line()?;
        if self.absent {
            return Ok((Streamed::Absent, self.sink));
        }
        let server_sha256 = self
            .server_sha256
            .ok_or(BadOutput::Truncated("no sha256 line after the data"))?;
        self.sink
            .flush()
            .map_err(|e| BadOutput::Write(e.to_string()))?;
        let done = Streamed::Done {
            server_sha256,
            local_sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
        };
        Ok((done, self.sink))
    }
}

impl<W: Write> Write for Decoder<W> {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        self.push(chunk).map_err(std::io::Error::other)?;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Base64 text fed in pieces that may break anywhere: decodes every whole quad (4 characters)
/// as it comes, keeping the rest for the next piece. A quad with padding ends one chunk's base64
/// (each line the script prints is a whole `ToBase64String`), so it is decoded on its own.
#[derive(Default)]
struct QuadDecoder {
    pending: Vec<u8>,
}

impl QuadDecoder {
    fn push(&mut self, text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.pending.extend_from_slice(text);
        let whole = self.pending.len() / 4 * 4;
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let mut from = 0;
        while from < whole {
            // Up to the end of the first quad holding padding, or all the whole quads.
            let to = self.pending[from..whole]
                .iter()
                .position(|b| *b == b'=')
                .map_or(whole, |at| (from + at) / 4 * 4 + 4);
            b64.decode_vec(&self.pending[from..to], &mut out)?;
            from = to;
        }
        self.pending.drain(..whole);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::remote::output::sha256;

    fn b64(bytes: &[u8]) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// What arrives for `data` when the server hashed it alike.
    fn done(data: &[u8]) -> Streamed {
        Streamed::Done {
            server_sha256: sha(data),
            local_sha256: sha(data),
            bytes: data.len() as u64,
        }
    }

    /// The whole output in one piece.
    fn stream(stdout: &[u8], sink: &mut Vec<u8>) -> Result<Streamed, BadOutput> {
        let mut d = Decoder::new(sink);
        d.push(stdout)?;
        d.finish().map(|(s, _)| s)
    }

    #[test]
    fn a_streamed_file_is_decoded_and_hashed_as_it_arrives() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let (a, b) = data.split_at(60_000);
        let out = format!(
            "{}\r\n{}\r\nsha256 {}\r\n",
            b64(a),
            b64(b),
            sha(&data).to_uppercase()
        );
        let mut got = Vec::new();
        let streamed = stream(out.as_bytes(), &mut got).unwrap();
        assert_eq!(got, data);
        assert_eq!(streamed, done(&data));
        // An empty file: the hash line alone.
        let empty = format!("sha256 {}\r\n", sha(b""));
        assert!(matches!(
            stream(empty.as_bytes(), &mut Vec::new()),
            Ok(Streamed::Done { bytes: 0, .. })
        ));
        assert_eq!(stream(b"absent\r\n", &mut Vec::new()), Ok(Streamed::Absent));
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_a_shorter_file() {
        let out = format!("{}\r\n{}\r\n", b64(b"first chunk"), b64(b"second"));
        assert_eq!(
            stream(out.as_bytes(), &mut Vec::new()),
            Err(BadOutput::Truncated("no sha256 line after the data"))
        );
        // Cut inside a quad, then the hash line: the base64 does not end where it should.
        let cut = &b64(b"a chunk of bytes")[..7];
        let out = format!("{cut}\r\nsha256 {}\r\n", sha(b"a chunk of bytes"));
        let err = stream(out.as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("quad"),
            "{err}"
        );
        // A character base64 does not have names its line.
        let err = stream(b"QUJD\r\nnot*base64\r\n", &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("base64"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_hash_line_or_a_line_after_it_is_an_error() {
        let data = b64(b"x");
        for out in [
            format!("{data}\r\nsha256 abc\r\n"),
            format!("{data}\r\nsha256 {}\r\n", "g".repeat(64)),
            format!("{data}\r\nsha256 \r\n"),
            format!("{data}\r\nsha256 {}\r\n{data}\r\n", sha(b"x")),
        ] {
            let err = stream(out.as_bytes(), &mut Vec::new()).unwrap_err();
            assert!(
                matches!(err, BadOutput::Line { line: 2 | 3, .. }),
                "{out}: {err}"
            );
        }
        assert!(sha256(b"sha256 12\r\n").is_err());
        assert_eq!(sha256(b"absent\r\n"), Ok(None));
        assert_eq!(
            sha256(format!("sha256 {}\r\n", sha(b"k")).as_bytes()),
            Ok(Some(sha(b"k")))
        );
    }

    #[test]
    fn a_stream_rewrapped_at_79_columns_decodes_to_the_same_bytes_and_hash() {
        // Two chunks as the script prints them (the first ends in padding), then a console host
        // that wraps every line at 79 columns.
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = data.split_at(40_001);
        let wrap = |text: String| {
            let chars: Vec<char> = text.chars().collect();
            chars
                .chunks(79)
                .map(|c| c.iter().collect::<String>() + "\r\n")
                .collect::<String>()
        };
        assert!(b64(a).ends_with('='), "the first chunk's base64 is padded");
        let out = format!("{}{}sha256 {}\r\n", wrap(b64(a)), wrap(b64(b)), sha(&data));
        let mut got = Vec::new();
        let streamed = stream(out.as_bytes(), &mut got).unwrap();
        assert_eq!(got, data);
        assert_eq!(streamed, done(&data));
        // Cut inside a quad before the hash line: an error, not a shorter file.
        let cut = format!("{}\r\nsha256 {}\r\n", &b64(b"abcdef")[..6], sha(b"abcdef"));
        assert!(stream(cut.as_bytes(), &mut Vec::new()).is_err());
    }

    /// The output fed in pieces of `sizes` (cycled), as Receive answers may cut it.
    fn in_pieces(stdout: &[u8], sizes: &[usize]) -> (Result<Streamed, BadOutput>, Vec<u8>) {
        let mut got = Vec::new();
        let mut d = Decoder::new(&mut got);
        let mut rest = stdout;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            if let Err(e) = d.push(piece) {
                return (Err(e), Vec::new());
            }
            rest = after;
        }
        let streamed = d.finish().map(|(s, _)| s);
        (streamed, got)
    }

    /// Two base64 lines (the first ends in padding), CRLF line ends, then the hash line.
    fn small_output() -> (Vec<u8>, String) {
        let data: Vec<u8> = (0..50u8).collect();
        let (a, b) = data.split_at(31);
        let out = format!("{}\r\n{}\r\nsha256 {}\r\n", b64(a), b64(b), sha(&data));
        (data, out)
    }

    #[test]
    fn a_stream_cut_in_two_anywhere_decodes_to_the_same_bytes_and_hash() {
        let (data, out) = small_output();
        let out = out.as_bytes();
        let whole = stream(out, &mut Vec::new()).unwrap();
        // Every cut: inside a quad, between CR and LF, inside `sha256 `, inside the hex digits.
        for at in 1..out.len() {
            let (streamed, got) = in_pieces(out, &[at, out.len()]);
            assert_eq!(streamed.as_ref(), Ok(&whole), "cut at {at}");
            assert_eq!(got, data, "cut at {at}");
        }
        // One byte at a time.
        let (streamed, got) = in_pieces(out, &[1]);
        assert_eq!((streamed.unwrap(), got), (whole, data));
    }

    #[test]
    fn a_console_wrapped_stream_in_answer_sized_pieces_decodes_to_the_same_bytes() {
        // Lines as the script prints them (256 KiB of file each), wrapped by a console host at 79
        // columns with LF only, arriving in pieces the size of Receive answers and odd sizes.
        let data: Vec<u8> = (0..600_000u32).map(|i| (i * 13 % 249) as u8).collect();
        let mut text = String::new();
        for chunk in data.chunks(super::super::script::CHUNK) {
            let line = b64(chunk);
            for piece in line.as_bytes().chunks(79) {
                text.push_str(std::str::from_utf8(piece).unwrap());
                text.push('\n');
            }
        }
        text.push_str(&format!("sha256 {}", sha(&data).to_uppercase()));
        for sizes in [&[96 * 1024][..], &[7, 4093, 1], &[65_537, 3]] {
            let (streamed, got) = in_pieces(text.as_bytes(), sizes);
            assert_eq!(streamed, Ok(done(&data)), "{sizes:?}");
            assert!(got == data, "{sizes:?}: the bytes differ");
        }
    }

    #[test]
    fn between_pieces_the_decoder_holds_a_few_bytes_never_the_file() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 256) as u8).collect();
        let out = format!("{}\r\nsha256 {}\r\n", b64(&data), sha(&data));
        let mut d = Decoder::new(std::io::sink());
        for piece in out.as_bytes().chunks(96 * 1024 + 5) {
            d.push(piece).unwrap();
            let held = d.head.len() + d.quads.pending.len() + usize::from(d.cr);
            assert!(held <= HASH_LINE_MAX, "{held} bytes held between pieces");
        }
        assert!(matches!(
            d.finish(),
            Ok((
                Streamed::Done {
                    bytes: 1_000_000,
                    ..
                },
                _
            ))
        ));
    }

    #[test]
    fn absent_and_errors_are_told_the_same_when_cut_across_pieces() {
        let (streamed, _) = in_pieces(b"abs", &[1]);
        assert!(streamed.is_err(), "`abs` alone is no answer");
        let (streamed, _) = in_pieces(b"absent\r\n", &[3]);
        assert_eq!(streamed, Ok(Streamed::Absent));
        let (streamed, _) = in_pieces(b"absent\r\nQUJD\r\n", &[5]);
        assert_eq!(streamed, Err(bad(2, "output after `absent`")));
        // A bad character on line 2, in a piece that starts mid-line, still names line 2.
        let (streamed, _) = in_pieces(b"QUJD\r\nQUJDnot*base64\r\n", &[9]);
        let err = streamed.unwrap_err();
        assert!(matches!(err, BadOutput::Line { line: 2, .. }), "{err}");
        // A lone CR inside the base64 is not a line end.
        let (streamed, _) = in_pieces(b"QU\rJD\r\n", &[3]);
        assert!(
            matches!(streamed, Err(BadOutput::Line { line: 1, .. })),
            "{streamed:?}"
        );
        // Output ending inside the hash line's digits is a bad hash line, not a file.
        let (_, out) = small_output();
        let cut = &out.as_bytes()[..out.len() - 10];
        let (streamed, _) = in_pieces(cut, &[16]);
        assert!(
            matches!(streamed, Err(BadOutput::Line { line: 3, .. })),
            "{streamed:?}"
        );
    }

    #[test]
    fn a_sink_that_fails_stops_the_decoding_and_its_error_is_kept_for_finish() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("No space left on device"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (_, out) = small_output();
        let mut d = Decoder::new(Full);
        let err = d.write(out.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(d.push(b"QUJD\r\n").is_err(), "a push after the error");
        let Err(err) = d.finish() else {
            panic!("finished after a failed write");
        };
        assert!(
            matches!(err, BadOutput::Write(ref w) if w.contains("No space left")),
            "{err}"
        );
    }
}
