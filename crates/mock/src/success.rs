//! Successful answers: OpenAI-compatible chat completions, streamed or not, and the model list.

use bytes::Bytes;
use serde::Serialize;

/// What a completion is made of.
#[derive(Debug)]
pub(crate) struct Completion<'a> {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) reply: &'a str,
    pub(crate) prompt_tokens: u64,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

impl Completion<'_> {
    fn usage(&self) -> Usage {
        let completion_tokens = (self.reply.chars().count() as u64).div_ceil(4).max(1);
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens,
            total_tokens: self.prompt_tokens + completion_tokens,
        }
    }

    /// The `chat.completion` JSON.
    pub(crate) fn json(&self) -> Bytes {
        let body = ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: self.reply,
                },
                finish_reason: "stop",
            }],
            usage: self.usage(),
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    fn event(&self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
        };
        let mut event = b"data: ".to_vec();
        event.extend(serde_json::to_vec(&chunk).unwrap_or_default());
        event.extend_from_slice(b"\n\n");
        Bytes::from(event)
    }

    /// The opening event: the assistant's role, empty content.
    pub(crate) fn role_event(&self) -> Bytes {
        self.event(
            Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            None,
        )
    }

    /// The reply in `chunks` content events.
    pub(crate) fn content_events(&self, chunks: u32) -> Vec<Bytes> {
        split(self.reply, chunks)
            .into_iter()
            .map(|piece| {
                self.event(
                    Delta {
                        role: None,
                        content: Some(piece),
                    },
                    None,
                )
            })
            .collect()
    }

    /// The closing event (`finish_reason: "stop"`).
    pub(crate) fn finish_event(&self) -> Bytes {
        self.event(
            Delta {
                role: None,
                content: None,
            },
            Some("stop"),
        )
    }
}

/// The end of an OpenAI stream.
pub(crate) const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// A comment line that keeps an event stream alive without an event.
pub(crate) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// `text` in `n` pieces of nearly equal length (in characters); empty pieces when the text is
/// shorter than `n`.
fn split(text: &str, n: u32) -> Vec<&str> {
    let n = n.max(1) as usize;
    let chars = text.chars().count();
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    (0..n)
        .map(|i| {
            let (from, to) = (i * chars / n, (i + 1) * chars / n);
            &text[bounds[from]..bounds[to]]
        })
        .collect()
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// The `GET /v1/models` JSON.
pub(crate) fn model_list(models: &[String]) -> Bytes {
    let list = ModelList {
        object: "list",
        data: models
            .iter()
            .map(|id| ModelEntry {
                id,
                object: "model",
                created: 0,
                owned_by: "towline-mock",
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_character_once() {
        let text = "Hello from the towline mock provider.";
        for n in 1..50 {
            let pieces = split(text, n);
            assert_eq!(pieces.len(), n as usize);
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(split("日本語", 2).concat(), "日本語");
    }

    #[test]
    fn events_are_sse_chunks() {
        let c = Completion {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m",
            reply: "hi",
            prompt_tokens: 3,
        };
        assert_eq!(
            c.role_event(),
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
        );
        assert!(
            c.finish_event()
                .ends_with(b"\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
        );
        let json: serde_json::Value = serde_json::from_slice(&c.json()).unwrap();
        assert_eq!(json["choices"][0]["message"]["content"], "hi");
        assert_eq!(json["usage"]["total_tokens"], 4);
    }
}
