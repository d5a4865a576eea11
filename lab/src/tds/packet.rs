//! TDS packet framing: reading client messages (packets up to EOM) and writing server messages
//! split at the negotiated packet size. TEST DOUBLE framing; knows nothing of tokens or SQL.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const SQL_BATCH: u8 = 1;
pub const RPC: u8 = 3;
pub const TABULAR_RESULT: u8 = 4;
pub const ATTENTION: u8 = 6;
pub const LOGIN7: u8 = 16;
pub const PRELOGIN: u8 = 18;

const HEADER: usize = 8;
const STATUS_EOM: u8 = 0x01;
/// The largest message the double accepts from a client (a guard against garbage lengths).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// One client message: its packet type and the concatenated payload of its packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub ty: u8,
    pub payload: Vec<u8>,
}

/// Reads packets until one has EOM set. `Ok(None)` when the client closed the connection cleanly.
pub async fn read_message<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<Message>> {
    let mut payload = Vec::new();
    let mut ty = None;
    loop {
        let mut head = [0u8; HEADER];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && ty.is_none() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if len < HEADER {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("TDS packet length {len} < 8"),
            ));
        }
        let start = payload.len();
        payload.resize(start + len - HEADER, 0);
        rd.read_exact(&mut payload[start..]).await?;
        if payload.len() > MAX_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "TDS message larger than 16 MiB",
            ));
        }
        // An attention may arrive while a request is still being split; the last type wins.
        ty = Some(head[0]);
        if head[1] & STATUS_EOM != 0 {
            return Ok(Some(Message {
                ty: head[0],
                payload,
            }));
        }
    }
}

/// Writes `payload` as a message of `ty` (or part of one), split into packets of at most
/// `packet_size` bytes, ids counting from `first_id`; EOM on the last one only when `last`. A server sends the start of a message this way when it
/// must reach the client before the statement ends (SQL Server's BACKUP ... WITH STATS progress
/// messages, which SSMS shows as the backup goes): such a packet is shorter than the packet size
/// and not the end of the message. Returns the id of the packet that would come next.
pub async fn write_packets<W: AsyncWrite + Unpin>(
    wr: &mut W,
    ty: u8,
    payload: &[u8],
    packet_size: usize,
    spid: u16,
    first_id: u8,
    last: bool,
) -> std::io::Result<u8> {
    let chunk = packet_size.saturating_sub(HEADER).max(1);
    let mut out = Vec::with_capacity(payload.len() + HEADER * (payload.len() / chunk + 1));
    let mut chunks = payload.chunks(chunk).peekable();
    let mut id = first_id;
    let eom = if last { STATUS_EOM } else { 0 };
    if payload.is_empty() {
        out.extend_from_slice(&[ty, eom, 0, HEADER as u8, 0, 0, id, 0]);
        id = id.wrapping_add(1);
    }
    while let Some(part) = chunks.next() {
        let status = if chunks.peek().is_none() { eom } else { 0 };
        let len = (part.len() + HEADER) as u16;
        out.push(ty);
        out.push(status);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&spid.to_be_bytes());
        out.push(id);
        out.push(0);
        out.extend_from_slice(part);
        id = id.wrapping_add(1);
    }
    wr.write_all(&out).await?;
    wr.flush().await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_message_is_split_at_the_packet_size_and_read_back_whole() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        write_packets(&mut wire, TABULAR_RESULT, &payload, 512, 51, 1, true)
            .await
            .unwrap();
        let packets = payload.len().div_ceil(504);
        assert_eq!(wire.len(), payload.len() + 8 * packets);
        // First packet: full size, not EOM, id 1; last: EOM.
        assert_eq!(&wire[..2], &[TABULAR_RESULT, 0]);
        assert_eq!(u16::from_be_bytes([wire[2], wire[3]]), 512);
        assert_eq!(wire[6], 1);
        assert_eq!(wire[512 + 6], 2);
        let mut rd = &wire[..];
        let msg = read_message(&mut rd).await.unwrap().unwrap();
        assert_eq!(msg.payload, payload);
        assert!(read_message(&mut rd).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_message_sent_in_parts_reads_back_whole_with_ids_running_on() {
        let mut wire = Vec::new();
        let next = write_packets(&mut wire, TABULAR_RESULT, b"early", 4096, 51, 1, false)
            .await
            .unwrap();
        assert_eq!(next, 2);
        // The early part is a short packet without EOM.
        assert_eq!(&wire[..4], &[TABULAR_RESULT, 0, 0, 13]);
        write_packets(
            &mut wire,
            TABULAR_RESULT,
            b" and late",
            4096,
            51,
            next,
            true,
        )
        .await
        .unwrap();
        assert_eq!(wire[13 + 1], STATUS_EOM);
        assert_eq!(wire[13 + 6], 2);
        let mut rd = &wire[..];
        let msg = read_message(&mut rd).await.unwrap().unwrap();
        assert_eq!(msg.payload, b"early and late");
    }
}
