//! The server's product version, read before a client is chosen: one TDS PRELOGIN exchange on a
//! connection of its own, closed as soon as the answer is in. No login, no statement, no TLS.
//!
//! [MS-TDS] 2.2.6.5 PRELOGIN: a message (packet type 0x12; the server answers in a tabular-result
//! packet, type 0x04) is a list of options, each `token, offset, length` (offset and length
//! big-endian, offsets from the start of the message), ended by 0xFF, followed by the options'
//! data. Option 0 is VERSION: UL_VERSION (major, minor, then the build as a big-endian 16-bit
//! number) and US_SUBBUILD; in the server's answer it is the SQL Server product version. SQL Server
//! 2000 (major 8; SP4 answers 8.0.2039) speaks TDS 7.1 at most, which the built-in client cannot
//! read; SQL Server 2005 (major 9) and later speak TDS 7.2 and later. The TDS version itself comes
//! only later, in the login's LOGINACK token (0x71000001 for 7.1), after a full login.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::endpoint::Endpoint;
use super::{SqlError, CONNECT_TIMEOUT};

const PRELOGIN: u8 = 0x12;
const TABULAR_RESULT: u8 = 0x04;
const STATUS_EOM: u8 = 0x01;
const HEADER: usize = 8;
/// A PRELOGIN answer is a few dozen bytes; more than this is not one.
const MAX_ANSWER: usize = 4096;

const OPT_VERSION: u8 = 0x00;
const OPT_ENCRYPTION: u8 = 0x01;
const OPT_INSTOPT: u8 = 0x02;
const OPT_THREADID: u8 = 0x03;
const OPT_TERMINATOR: u8 = 0xFF;
/// ENCRYPT_NOT_SUP: this connection never gets as far as TLS.
const ENCRYPT_NOT_SUP: u8 = 0x02;

/// A SQL Server product version as PRELOGIN reports it, e.g. 8.0.2039.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
}

impl ServerVersion {
    /// SQL Server 2000 and older speak TDS 7.1 at most.
    pub fn speaks_tds71_at_most(&self) -> bool {
        self.major <= 8
    }

    /// The product's name for messages: `SQL Server 2000` for major 8, else the bare version.
    pub fn product(&self) -> String {
        match self.major {
            8 => "SQL Server 2000".to_string(),
            _ => format!("SQL Server {self}"),
        }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// Asks the server at `at` for its version. `server` names it in messages.
pub async fn server_version(at: &Endpoint, server: &str) -> Result<ServerVersion, SqlError> {
    let fail = |message: String| SqlError::Connection {
        server: server.to_string(),
        message,
    };
    let exchange = async {
        let mut tcp = TcpStream::connect((at.host.as_str(), at.port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&request())
            .await
            .map_err(|e| fail(format!("sending PRELOGIN: {e}")))?;
        read_answer(&mut tcp)
            .await
            .map_err(|e| fail(format!("reading the PRELOGIN answer: {e}")))
    };
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))??;
    parse_version(&answer).map_err(|message| SqlError::Protocol {
        message: format!("{server} answered PRELOGIN without a usable VERSION: {message}"),
    })
}

/// The PRELOGIN packet: VERSION (ours, all zero), ENCRYPTION not supported, INSTOPT empty,
/// THREADID 0. These four options are the ones a TDS 7.1 server (SQL Server 2000) knows.
fn request() -> Vec<u8> {
    let options: [(u8, &[u8]); 4] = [
        (OPT_VERSION, &[0, 0, 0, 0, 0, 0]),
        (OPT_ENCRYPTION, &[ENCRYPT_NOT_SUP]),
        (OPT_INSTOPT, &[0]),
        (OPT_THREADID, &[0, 0, 0, 0]),
    ];
    let mut head = Vec::new();
    let mut data = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, value) in options {
        head.push(token);
        head.extend_from_slice(&(offset as u16).to_be_bytes());
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        offset += value.len();
        data.extend_from_slice(value);
    }
    head.push(OPT_TERMINATOR);
    head.extend(data);
    // Packet header ([MS-TDS] 2.2.3.1): type, status (end of message), length (big-endian,
    // header included), SPID, packet id, window.
    let len = (HEADER + head.len()) as u16;
    let mut packet = vec![PRELOGIN, STATUS_EOM];
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend(head);
    packet
}

/// Reads the answer's packets up to the end of the message; returns their payload.
async fn read_answer(tcp: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; HEADER];
        tcp.read_exact(&mut head).await.map_err(|e| e.to_string())?;
        if head[0] != TABULAR_RESULT {
            return Err(format!(
                "packet type {:#04x} where a PRELOGIN answer (0x04) belongs; is this a SQL Server?",
                head[0]
            ));
        }
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if len < HEADER || payload.len() + len > MAX_ANSWER {
            return Err(format!(
                "packet length {len} does not fit a PRELOGIN answer"
            ));
        }
        let start = payload.len();
        payload.resize(start + len - HEADER, 0);
        tcp.read_exact(&mut payload[start..])
            .await
            .map_err(|e| e.to_string())?;
        if head[1] & STATUS_EOM != 0 {
            return Ok(payload);
        }
    }
}

/// The VERSION option of a PRELOGIN message.
fn parse_version(message: &[u8]) -> Result<ServerVersion, String> {
    let mut at = 0;
    loop {
        let token = *message.get(at).ok_or("the option list has no terminator")?;
        if token == OPT_TERMINATOR {
            return Err("no VERSION option".into());
        }
        let field = |i: usize| -> Result<usize, String> {
            let b = message
                .get(at + i..at + i + 2)
                .ok_or("the option list is cut short")?;
            Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
        };
        let (offset, length) = (field(1)?, field(3)?);
        if token == OPT_VERSION {
            let v = message
                .get(offset..offset + length)
                .filter(|v| v.len() >= 4)
                .ok_or("VERSION is shorter than 4 bytes or lies outside the message")?;
            return Ok(ServerVersion {
                major: v[0],
                minor: v[1],
                build: u16::from_be_bytes([v[2], v[3]]),
            });
        }
        at += 5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_option_gives_major_minor_and_a_big_endian_build() {
        // SQL Server 2000 SP4's answer: VERSION 8.0.2039 at offset 11, ENCRYPTION not supported.
        let mut answer = vec![
            0x00, 0x00, 0x0B, 0x00, 0x06, 0x01, 0x00, 0x11, 0x00, 0x01, 0xFF,
        ];
        answer.extend_from_slice(&[0x08, 0x00, 0x07, 0xF7, 0x00, 0x00, 0x02]);
        let v = parse_version(&answer).unwrap();
        assert_eq!(v.to_string(), "8.0.2039");
        assert!(v.speaks_tds71_at_most());
        assert_eq!(v.product(), "SQL Server 2000");
        let sql2016 = ServerVersion {
            major: 13,
            minor: 0,
            build: 5026,
        };
        assert!(!sql2016.speaks_tds71_at_most());
    }

    #[test]
    fn an_answer_without_a_usable_version_says_so() {
        assert!(parse_version(&[0xFF]).unwrap_err().contains("no VERSION"));
        assert!(parse_version(&[0x00, 0x00])
            .unwrap_err()
            .contains("cut short"));
        let outside = [0x00, 0x00, 0x40, 0x00, 0x06, 0xFF];
        assert!(parse_version(&outside).unwrap_err().contains("outside"));
        let unterminated = [0x01, 0x00, 0x06, 0x00, 0x01];
        assert!(parse_version(&unterminated)
            .unwrap_err()
            .contains("terminator"));
    }

    #[test]
    fn the_request_is_one_prelogin_packet_whose_length_covers_it() {
        let r = request();
        assert_eq!((r[0], r[1]), (PRELOGIN, STATUS_EOM));
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) as usize, r.len());
        // Its own VERSION option parses (all zero: a client states its own version there).
        assert_eq!(parse_version(&r[HEADER..]).unwrap().to_string(), "0.0.0");
    }
}
