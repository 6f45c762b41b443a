//! Server-sent events as the HTTP providers stream them: `data: ...`
//! lines, events separated by a blank line; OpenAI ends with
//! `data: [DONE]`, Anthropic with a `message_stop` event. Bytes are pushed
//! as they arrive (an event may be split anywhere, inside a UTF-8
//! character too); comments (`:`) and other fields (`event:`, `id:`) are
//! skipped: both providers repeat the event's type inside its data.
//!
//! [`read_events`] turns a reply's body into a stream of
//! [`ProviderChunk`]s through a provider's [`EventParser`], holding the
//! connection permits until the body ends or the stream is dropped.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;

use super::http::{Permits, transport_error};
use super::types::ProviderChunk;
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

/// What a provider makes of one event.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// The chunks it carries, in order.
    pub(super) chunks: Vec<ProviderChunk>,
    /// Whether it ends the stream.
    pub(super) end: bool,
}

/// A provider's reading of its events.
pub(super) trait EventParser: Send + 'static {
    /// The chunks of one event; an error ends the stream.
    fn event(&mut self, event: Event) -> Result<Parsed, ProviderError>;

    /// The body ended before an event said the stream was over: `Ok` if
    /// what came is the whole answer, else why not.
    fn ended_early(&mut self) -> Result<(), ProviderError>;
}

/// A stream being read: the reply (none once it ended), the decoder, the
/// chunks decoded but not yet taken, and the permits of the exchange.
struct Reading<P> {
    response: Option<reqwest::Response>,
    decoder: SseDecoder,
    parser: P,
    ready: VecDeque<Result<ProviderChunk, ProviderError>>,
    timeout: Duration,
    _permits: Permits,
}

/// The chunks of a streamed reply, read as its bytes arrive and parsed by
/// `parser`. An error (from the parser, a garbled event or the transport)
/// is the last item. `timeout` is the one reported if the body times out.
pub(super) fn read_events<P: EventParser>(
    response: reqwest::Response,
    permits: Permits,
    timeout: Duration,
    parser: P,
) -> BoxStream<'static, Result<ProviderChunk, ProviderError>> {
    let state = Reading {
        response: Some(response),
        decoder: SseDecoder::default(),
        parser,
        ready: VecDeque::new(),
        timeout,
        _permits: permits,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                // An error ends the stream after it is read.
                if item.is_err() {
                    st.response = None;
                    st.ready.clear();
                }
                return Some((item, st));
            }
            let response = st.response.as_mut()?;
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for event in st.decoder.push(&bytes) {
                        match event.and_then(|e| st.parser.event(e)) {
                            Ok(parsed) => {
                                st.ready.extend(parsed.chunks.into_iter().map(Ok));
                                if parsed.end {
                                    st.response = None;
                                    break;
                                }
                            }
                            Err(e) => {
                                st.ready.push_back(Err(e));
                                break;
                            }
                        }
                    }
                }
                Ok(None) => {
                    st.response = None;
                    if let Err(e) = st.parser.ended_early() {
                        st.ready.push_back(Err(e));
                    }
                }
                Err(e) => st.ready.push_back(Err(transport_error(e, st.timeout))),
            }
        }
    }))
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
