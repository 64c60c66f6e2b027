//! A `redis-cli` for the harness: one command over a fresh TCP connection, RESP2, with a bound on
//! every step. The harness asks Redis, Sentinel and Cluster nodes about their state with it while
//! some of them are frozen or dead, so a call must never wait on a node longer than its timeout,
//! and must not depend on the client under test.

use std::{
    fmt,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// How long one harness call may take at most, connection included: long enough for a node on a
/// loaded host, short enough that a frozen node does not stall a wait loop.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A status or a non-nil bulk string, as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of a non-nil array.
    pub fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// A flat `[field, value, field, value, ...]` array (what `SENTINEL replicas` returns per
    /// replica), as pairs of text.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.items()
            .unwrap_or_default()
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((k.text()?, v.text().unwrap_or_default())),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) | Reply::Array(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// Sends `args` to the Redis (or Sentinel) at `addr` ("127.0.0.1:port") and reads the reply; an
/// error reply is `Ok(Reply::Error)`, a transport failure (refused, reset, timed out) is `Err`.
pub fn call(addr: &str, args: &[&str]) -> Result<Reply, String> {
    call_within(addr, args, CALL_TIMEOUT)
}

pub fn call_within(addr: &str, args: &[&str], timeout: Duration) -> Result<Reply, String> {
    let socket: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    let fail = |e: std::io::Error| format!("{} to {addr}: {e}", args.join(" "));
    let mut stream = TcpStream::connect_timeout(&socket, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    stream.write_all(&request).map_err(fail)?;
    read_reply(&mut BufReader::new(stream)).map_err(fail)
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad reply {line:?}"),
        )
    };
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
        "$" => match rest.parse::<i64>().map_err(|_| bad())? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut body = vec![0; n as usize + 2];
                reader.read_exact(&mut body)?;
                body.truncate(n as usize);
                Reply::Bulk(Some(body))
            }
        },
        "*" => match rest.parse::<i64>().map_err(|_| bad())? {
            n if n < 0 => Reply::Array(None),
            n => Reply::Array(Some(
                (0..n)
                    .map(|_| read_reply(reader))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(bad()),
    })
}

/// `INFO <section>` as its `field:value` lines.
pub fn info(addr: &str, section: &str) -> Result<Vec<(String, String)>, String> {
    let reply = call(addr, &["INFO", section])?;
    let text = reply
        .text()
        .ok_or_else(|| format!("INFO {section} from {addr}: {reply:?}"))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// One field of `INFO <section>`.
pub fn info_field(addr: &str, section: &str, field: &str) -> Result<String, String> {
    info(addr, section)?
        .into_iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no {field} in INFO {section} of {addr}"))
}

/// The first element of `ROLE`: "master", "slave" or "sentinel".
pub fn role(addr: &str) -> Result<String, String> {
    let reply = call(addr, &["ROLE"])?;
    reply
        .items()
        .and_then(|items| items.first())
        .and_then(Reply::text)
        .ok_or_else(|| format!("ROLE from {addr}: {reply:?}"))
}
