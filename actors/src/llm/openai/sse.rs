//! Server-sent events as OpenAI streams them: `data: ...` lines, events
//! separated by a blank line, `data: [DONE]` at the end. Bytes are pushed
//! as they arrive (an event may be split anywhere, inside a UTF-8
//! character too); comments (`:`) and other fields are skipped.

use crate::llm::error::ProviderError;

/// The longest event buffered before the stream is judged malformed.
const MAX_EVENT: usize = 1 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// An event's data (its `data:` lines joined by newlines).
    Data(String),
    /// `[DONE]`.
    Done,
}

/// Splits pushed bytes into events.
#[derive(Debug, Default)]
pub(super) struct SseDecoder {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseDecoder {
    /// The events completed by `bytes`.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<Result<Event, ProviderError>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Ok(line) = std::str::from_utf8(line) else {
                out.push(Err(ProviderError::Malformed("stream line is not UTF-8".into())));
                return out;
            };
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(Ok(if data == "[DONE]" {
                        Event::Done
                    } else {
                        Event::Data(data)
                    }));
                }
                continue;
            }
            if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
                if self.data.as_ref().is_some_and(|d| d.len() > MAX_EVENT) {
                    out.push(Err(ProviderError::Malformed("stream event over 1 MiB".into())));
                    return out;
                }
            }
        }
        if self.buf.len() > MAX_EVENT {
            out.push(Err(ProviderError::Malformed("stream line over 1 MiB".into())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = "data: {\"a\":\"é\"}\r\n\r\n: comment\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut d = SseDecoder::default();
            let mut events = d.push(&bytes[..cut]);
            events.extend(d.push(&bytes[cut..]));
            let events: Vec<Event> = events.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                events,
                vec![
                    Event::Data("{\"a\":\"é\"}".into()),
                    Event::Data("x\ny".into()),
                    Event::Done
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = SseDecoder::default();
        assert!(d.push(b"data: \xff\xfe\n\n").iter().any(Result::is_err));
        let mut d = SseDecoder::default();
        let long = vec![b'a'; MAX_EVENT + 1];
        assert!(d.push(&long).iter().any(Result::is_err));
    }
}
