//! Where a SQL Server listens: the plan's port, else the SQL Server Browser's answer for a named
//! instance, else 1433. Touches the network only to ask the Browser (one UDP datagram).

use std::time::Duration;

use super::{host_address, SqlError};
use crate::plan::SqlConnection;

/// A TCP address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// The address of the plan's server. `server` names it in messages.
pub async fn resolve(conn: &SqlConnection, server: &str) -> Result<Endpoint, SqlError> {
    let host = host_address(&conn.host).to_string();
    let port = match (conn.port, &conn.instance) {
        (Some(port), _) => port,
        (None, Some(instance)) => browse_instance_port(&host, instance, server).await?,
        (None, None) => 1433,
    };
    Ok(Endpoint { host, port })
}

/// Asks the SQL Server Browser (UDP 1434) for a named instance's TCP port.
async fn browse_instance_port(host: &str, instance: &str, server: &str) -> Result<u16, SqlError> {
    let fail = |message: String| SqlError::Connection {
        server: server.to_string(),
        message,
    };
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut request = vec![0x04u8]; // CLNT_UCAST_INST
    request.extend_from_slice(instance.as_bytes());
    request.push(0);
    socket
        .send_to(&request, (host, 1434))
        .await
        .map_err(|e| fail(format!("SQL Server Browser: {e}")))?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .map_err(|_| fail(format!("SQL Server Browser on {host} did not answer for instance {instance}; give `port:` in the plan")))?
        .map_err(|e| fail(format!("SQL Server Browser: {e}")))?;
    parse_browser_reply(&buf[..n]).ok_or_else(|| {
        fail(format!(
            "SQL Server Browser on {host} gave no TCP port for instance {instance}"
        ))
    })
}

/// `SVR_RESP` (0x05, length) then `ServerName;X;InstanceName;Y;...;tcp;1433;;`.
fn parse_browser_reply(reply: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(reply.get(3..)?);
    let fields: Vec<&str> = text.split(';').collect();
    fields
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("tcp"))
        .and_then(|w| w[1].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_reply_gives_the_instance_port() {
        let mut reply = vec![0x05, 0, 0];
        reply.extend_from_slice(
            b"ServerName;SQL01;InstanceName;MIIS;IsClustered;No;Version;8.00.194;tcp;1455;;",
        );
        assert_eq!(parse_browser_reply(&reply), Some(1455));
        assert_eq!(parse_browser_reply(&[0x05, 0, 0]), None);
    }
}
