//! A minimal Server-Sent Events parser (the WHATWG event-stream format) for
//! the revocation feed.
//!
//! Hand-written rather than a crate: the framing is about forty lines, the
//! feed comes from our own server, and owning it lets us cap line length (a
//! peer that never sends a newline cannot grow memory without bound) and
//! report comment lines, which count as contact for staleness.

/// One parsed item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A complete event (dispatched at a blank line).
    Event {
        /// `event:` (empty means "message").
        event: String,
        /// `data:` lines joined with `\n`.
        data: String,
        /// `id:`, if the event had one.
        id: Option<String>,
    },
    /// A comment line (`:` …), e.g. a keep-alive.
    Comment,
}

/// The stream is broken beyond repair (a line longer than the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong;

/// Incremental parser: feed it chunks, get items.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    event: String,
    data: String,
    id: Option<String>,
    has_data: bool,
}

/// Longest line accepted. Revocation events are ~150 bytes.
const MAX_LINE: usize = 64 * 1024;

impl Parser {
    /// Parses `chunk`, appending complete items to `out`.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), LineTooLong> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line, out);
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<Item>) {
        if line.is_empty() {
            if self.has_data || !self.event.is_empty() {
                out.push(Item::Event {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                    id: self.id.take(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            out.push(Item::Comment);
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" => self.id = Some(value.to_owned()),
            // `retry:` is the server's reconnection hint; our back-off is our
            // own, so it is read and ignored, like unknown fields.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<Item> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> Item {
        Item::Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn framing() {
        assert_eq!(
            parse(&["event: revoked\nid: 4", "2\ndata: {\"a\":1}\n\n: ping\n\n"]),
            vec![ev("revoked", "{\"a\":1}", Some("42")), Item::Comment]
        );
        assert_eq!(
            parse(&["event:ready\r\ndata:x\r\ndata: y\r\nretry: 10\r\n\r\n"]),
            vec![ev("ready", "x\ny", None)]
        );
        // An incomplete event is not dispatched.
        assert_eq!(parse(&["event: revoked\ndata: 1\n"]), vec![]);
        // Blank lines alone dispatch nothing.
        assert_eq!(parse(&["\n\n\n"]), vec![]);
    }

    #[test]
    fn a_line_without_end_is_capped() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        let big = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.feed(&big, &mut out), Err(LineTooLong));
    }
}
