//! Anthropic's streamed events as [`ProviderChunk`]s.
//!
//! | event | chunks |
//! |---|---|
//! | `message_start` | none; its `usage.input_tokens` is kept |
//! | `content_block_start` (text) | its text, if any |
//! | `content_block_start` (tool_use) | a [`ProviderChunk::ToolCall`] with the id and name |
//! | `content_block_delta` `text_delta` | [`ProviderChunk::Text`] |
//! | `content_block_delta` `input_json_delta` | a piece of the call's arguments |
//! | `content_block_stop` | for a call that got no argument text: its start's `input` (`{}`) |
//! | `message_delta` | [`ProviderChunk::Finish`], then [`ProviderChunk::Usage`] |
//! | `message_stop` | the end |
//! | `ping`, unknown types, other blocks (`thinking`) | none |
//! | `error` | its typed error, ending the stream |
//!
//! A tool call's index is its place among the answer's `tool_use` blocks,
//! not the content block's index (text blocks are not calls). A delta for
//! a block that never started, a block started twice, an event that does
//! not parse, or a body that ends before `message_stop`, is
//! [`ProviderError::Malformed`].

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::wire::{WireError, WireUsage, error_of_kind, finish_reason};
use crate::llm::error::ProviderError;
use crate::llm::http::truncate;
use crate::llm::sse::{Event, EventParser, Parsed};
use crate::llm::types::ProviderChunk;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    /// Event types added after this was written are skipped, as
    /// Anthropic asks of clients.
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Option<Value>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

/// A content block of the streamed answer.
#[derive(Debug)]
enum Open {
    Text,
    Tool {
        /// The call's index among the answer's calls.
        call: u32,
        /// The `input` its start carried (`{}` in practice).
        input: Option<Value>,
        /// Whether any argument text came.
        got_arguments: bool,
    },
    /// A block the gateway has no place for; its deltas are skipped.
    Other,
}

/// The reading of one streamed answer.
#[derive(Debug, Default)]
pub(super) struct AnthropicEvents {
    blocks: HashMap<u64, Open>,
    calls: u32,
    input_tokens: Option<u64>,
}

impl AnthropicEvents {
    fn on(&mut self, event: WireEvent) -> Result<Parsed, ProviderError> {
        let mut chunks = Vec::new();
        match event {
            WireEvent::MessageStart { message } => {
                self.input_tokens = message.usage.and_then(|u| u.prompt_tokens());
            }
            WireEvent::ContentBlockStart { index, content_block } => {
                let open = match content_block {
                    StartBlock::Text { text } => {
                        if !text.is_empty() {
                            chunks.push(ProviderChunk::Text(text));
                        }
                        Open::Text
                    }
                    StartBlock::ToolUse { id, name, input } => {
                        let call = self.calls;
                        self.calls += 1;
                        chunks.push(ProviderChunk::ToolCall {
                            index: call,
                            id: Some(id),
                            name: Some(name),
                            arguments: String::new(),
                        });
                        Open::Tool {
                            call,
                            input,
                            got_arguments: false,
                        }
                    }
                    StartBlock::Other => Open::Other,
                };
                if self.blocks.insert(index, open).is_some() {
                    return Err(ProviderError::Malformed(format!("content block {index} started twice")));
                }
            }
            WireEvent::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get_mut(&index).ok_or_else(|| {
                    ProviderError::Malformed(format!("delta for content block {index}, never started"))
                })?;
                match (block, delta) {
                    (Open::Text, BlockDelta::TextDelta { text }) => chunks.push(ProviderChunk::Text(text)),
                    (
                        Open::Tool {
                            call, got_arguments, ..
                        },
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => {
                        *got_arguments |= !partial_json.is_empty();
                        chunks.push(ProviderChunk::ToolCall {
                            index: *call,
                            id: None,
                            name: None,
                            arguments: partial_json,
                        });
                    }
                    (Open::Other, _) | (_, BlockDelta::Other) => {}
                    (open, _) => {
                        return Err(ProviderError::Malformed(format!(
                            "content block {index} ({open:?}) got a delta of another kind"
                        )));
                    }
                }
            }
            WireEvent::ContentBlockStop { index } => match self.blocks.get(&index) {
                None => {
                    return Err(ProviderError::Malformed(format!(
                        "content block {index} stopped, never started"
                    )));
                }
                Some(Open::Tool {
                    call,
                    input,
                    got_arguments: false,
                }) => chunks.push(ProviderChunk::ToolCall {
                    index: *call,
                    id: None,
                    name: None,
                    arguments: input.as_ref().map_or_else(|| "{}".to_string(), Value::to_string),
                }),
                Some(_) => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    chunks.push(ProviderChunk::Finish(finish_reason(&reason)));
                }
                if let Some(usage) = usage {
                    let output_tokens = usage
                        .output_tokens
                        .ok_or_else(|| ProviderError::Malformed("message_delta usage lacks output_tokens".into()))?;
                    // Newer replies repeat the prompt's count here.
                    let input_tokens = usage
                        .prompt_tokens()
                        .or(self.input_tokens)
                        .ok_or_else(|| ProviderError::Malformed("no input_tokens in message_start".into()))?;
                    chunks.push(ProviderChunk::Usage {
                        input_tokens,
                        output_tokens,
                    });
                }
            }
            WireEvent::MessageStop => return Ok(Parsed { chunks, end: true }),
            WireEvent::Ping | WireEvent::Unknown => {}
            WireEvent::Error { error } => {
                let message = error.message.unwrap_or_default();
                return Err(error_of_kind(error.kind.as_deref().unwrap_or_default(), &message));
            }
        }
        Ok(Parsed { chunks, end: false })
    }
}

impl EventParser for AnthropicEvents {
    fn event(&mut self, event: Event) -> Result<Parsed, ProviderError> {
        match event {
            Event::Data(data) => {
                let wire: WireEvent = serde_json::from_str(&data)
                    .map_err(|e| ProviderError::Malformed(format!("not a Messages event: {e}: {}", truncate(&data))))?;
                self.on(wire)
            }
            // Not Anthropic's: it ends with `message_stop`.
            Event::Done => Err(ProviderError::Malformed("`[DONE]` in a Messages stream".into())),
        }
    }

    fn ended_early(&mut self) -> Result<(), ProviderError> {
        Err(ProviderError::Malformed("the stream ended before message_stop".into()))
    }
}

/// The chunks of a whole stream of event data, for tests: every chunk
/// until the end, or the first error.
#[cfg(test)]
pub(super) fn parse_all(events: &[&str]) -> Result<Vec<ProviderChunk>, ProviderError> {
    let mut parser = AnthropicEvents::default();
    let mut out = Vec::new();
    for data in events {
        let parsed = parser.event(Event::Data((*data).to_string()))?;
        out.extend(parsed.chunks);
        if parsed.end {
            return Ok(out);
        }
    }
    parser.ended_early().map(|()| out)
}
