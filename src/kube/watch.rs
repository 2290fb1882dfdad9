//! An open watch: [`WatchStream`] reads the response line by line (each at most
//! [`MAX_EVENT_LINE_BYTES`]) and decodes each with the one event decoder of `decode`;
//! [`DecodedWatch`] yields what it decoded, the stream's own iterator the strict view of it.
//!
//! Owns: the line reader and the end of a stream. Must not: open or re-open watches (see
//! `Client::watch`; re-watching lives in the reflector).

use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::client::{MAX_EVENT_LINE_BYTES, map_ureq};
use super::decode::{Decoded, decode_event_line, strict};
use super::error::KubeError;
use super::resource::WatchEvent;

/// An open watch; yields events until the server ends the watch (`None`) or an error. After an
/// I/O error or an oversized line the stream is finished; an object that does not decode as
/// `T` is an `Err` item (see [`WatchStream::decoded`] to get it with its name instead).
pub struct WatchStream<T> {
    path: String,
    reader: BufReader<Box<dyn Read + Send>>,
    done: bool,
    _t: PhantomData<fn() -> T>,
}

/// Reads one line (without the newline) of at most `max` bytes. `Ok(None)` at EOF.
fn read_line_capped(rd: &mut impl BufRead, max: usize, line: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    line.clear();
    loop {
        let buf = rd.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(()) });
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("event line over {max} bytes"),
            ));
        }
        line.extend_from_slice(chunk);
        let used = found.unwrap_or(chunk.len());
        rd.consume(used);
        if found.is_some() {
            return Ok(Some(()));
        }
    }
}

impl<T: DeserializeOwned> WatchStream<T> {
    /// A stream over a watch response's body.
    pub(super) fn new(path: String, reader: Box<dyn Read + Send>) -> WatchStream<T> {
        WatchStream { path, reader: BufReader::new(reader), done: false, _t: PhantomData }
    }

    /// The same events, but an object that does not decode as `T` is an `Err` inside
    /// [`Decoded`] (with its name and resourceVersion) instead of ending the stream.
    pub fn decoded(self) -> DecodedWatch<T> {
        DecodedWatch(self)
    }

    /// The next event as the one decoder ([`decode_event_line`]) gives it; `None` when the
    /// stream is finished.
    fn next_decoded(&mut self) -> Option<Result<WatchEvent<Decoded<T>>, KubeError>> {
        let mut line = Vec::new();
        while !self.done {
            match read_line_capped(&mut self.reader, MAX_EVENT_LINE_BYTES, &mut line) {
                Ok(None) => self.done = true,
                Ok(Some(())) => match decode_event_line(&self.path, &line) {
                    Ok(None) => continue,
                    Ok(Some(ev)) => return Some(Ok(ev)),
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => {
                    self.done = true;
                    let err = if e.kind() == std::io::ErrorKind::InvalidData {
                        KubeError::Decode { verb: "watch", path: self.path.clone(), detail: e.to_string() }
                    } else {
                        map_ureq("watch", &self.path, ureq::Error::from(e))
                    };
                    return Some(Err(err));
                }
            }
        }
        None
    }
}

impl<T: DeserializeOwned> Iterator for WatchStream<T> {
    type Item = Result<WatchEvent<T>, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let ev = self.next_decoded()?;
        Some(ev.and_then(|ev| strict(&self.path, ev)))
    }
}

/// A [`WatchStream`] that yields [`Decoded`] objects: see [`WatchStream::decoded`].
pub struct DecodedWatch<T>(WatchStream<T>);

impl<T: DeserializeOwned> Iterator for DecodedWatch<T> {
    type Item = Result<WatchEvent<Decoded<T>>, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_decoded()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_cap() {
        let data = b"abc\n\ndefgh\nxy".to_vec();
        let mut rd = BufReader::with_capacity(2, &data[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(()) = read_line_capped(&mut rd, 5, &mut line).unwrap() {
            got.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(got, ["abc", "", "defgh", "xy"]);
        let data = b"abcdefg\n".to_vec();
        let mut rd = BufReader::with_capacity(3, &data[..]);
        let e = read_line_capped(&mut rd, 5, &mut line).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    /// Both views read the same lines through the one decoder: the strict one turns the bad
    /// object into an error item and goes on; an oversized line ends either.
    #[test]
    fn strict_and_decoded_views_of_one_stream() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct N {
            spec: u32,
        }
        let body = format!(
            "{}\n\n{}\n{}\n{}\nnot reached\n",
            r#"{"type":"ADDED","object":{"metadata":{"name":"a"},"spec":1}}"#,
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"b","resourceVersion":"7"},"spec":"bad"}}"#,
            r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"8"}}}"#,
            "x".repeat(MAX_EVENT_LINE_BYTES + 1),
        );
        let stream =
            |body: &str| WatchStream::<N>::new("/x".into(), Box::new(std::io::Cursor::new(body.to_string())));

        let strict: Vec<_> = stream(&body).collect();
        assert_eq!(strict.len(), 4, "{strict:?}");
        assert_eq!(strict[0].as_ref().unwrap(), &WatchEvent::Added(N { spec: 1 }));
        assert!(strict[1].as_ref().unwrap_err().to_string().contains("bad MODIFIED object"));
        assert_eq!(strict[2].as_ref().unwrap(), &WatchEvent::Bookmark { resource_version: "8".into() });
        assert!(strict[3].as_ref().unwrap_err().to_string().contains("event line over"));

        let decoded: Vec<_> = stream(&body).decoded().collect();
        assert_eq!(decoded.len(), 4, "{decoded:?}");
        let Ok(WatchEvent::Modified(d)) = &decoded[1] else { panic!("{:?}", decoded[1]) };
        assert_eq!((d.name.as_str(), d.resource_version.as_str()), ("b", "7"));
        assert!(d.object.is_err());
        assert!(decoded[3].as_ref().unwrap_err().to_string().contains("event line over"));
    }
}
