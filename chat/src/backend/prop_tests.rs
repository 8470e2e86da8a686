//! Property tests of what remote backends send back: any bytes, cut into any chunks, as an
//! OpenAI SSE stream or an Ollama NDJSON stream. Nothing panics; the stream ends with
//! `Done` or an error, never with silence; well-formed answers come back word for word
//! however the body is chunked.

use futures::StreamExt;
use proptest::prelude::*;

use super::lines::lines_of;
use super::ollama::parse_ndjson;
use super::openai::parse_sse;
use super::{BackendError, Result, StreamEvent};

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

/// `body` cut at `cuts` (positions taken modulo its length).
fn chunked(body: &[u8], cuts: &[usize]) -> Vec<std::result::Result<bytes::Bytes, std::io::Error>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.extend([0, body.len()]);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Ok(bytes::Bytes::copy_from_slice(&body[w[0]..w[1]])))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Wire {
    Sse,
    Ndjson,
}

/// Every event of the parsed stream, stopping after the first error.
fn events(wire: Wire, body: &[u8], cuts: &[usize]) -> Vec<Result<StreamEvent>> {
    let lines = lines_of(futures::stream::iter(chunked(body, cuts)));
    let stream: std::pin::Pin<Box<dyn futures::Stream<Item = Result<StreamEvent>> + Send>> =
        match wire {
            Wire::Sse => Box::pin(parse_sse(lines)),
            Wire::Ndjson => Box::pin(parse_ndjson(lines)),
        };
    futures::executor::block_on(stream.collect::<Vec<_>>())
}

fn sse_body(words: &[String], usage: bool) -> Vec<u8> {
    let mut body = String::new();
    for w in words {
        let chunk =
            serde_json::json!({"choices": [{"delta": {"content": w}, "finish_reason": null}]});
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}]});
    body.push_str(&format!("data: {last}\n\n"));
    if usage {
        body.push_str(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
        );
    }
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

fn ndjson_body(words: &[String]) -> Vec<u8> {
    let mut body = String::new();
    for w in words {
        let line =
            serde_json::json!({"message": {"role": "assistant", "content": w}, "done": false});
        body.push_str(&format!("{line}\n"));
    }
    body.push_str("{\"message\":{\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":2}\n");
    body.into_bytes()
}

/// Lines a backend may plausibly send, well-formed or not.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        ".{0,24}".prop_map(|s| format!("data: {s}\n").into_bytes()),
        Just(b"data: [DONE]\n".to_vec()),
        Just(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n"
                .to_vec()
        ),
        Just(b"data: {\"error\":{\"message\":\"overloaded\"}}\n".to_vec()),
        Just(b"{\"message\":{\"content\":\"x\"},\"done\":false}\n".to_vec()),
        Just(b"{\"done\":true}\n".to_vec()),
        Just(b"{\"error\":\"model not found\"}\n".to_vec()),
        Just(b": keep-alive\r\n".to_vec()),
        Just(b"\n".to_vec()),
    ]
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![Just(Wire::Sse), Just(Wire::Ndjson)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_stream_ends_with_done_or_an_error(
        wire in wire(),
        parts in prop::collection::vec(fragment(), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let events = events(wire, &parts.concat(), &cuts);
        let last = events.last();
        prop_assert!(
            matches!(last, Some(Ok(StreamEvent::Done { .. })) | Some(Err(_))),
            "the stream ended with {last:?}"
        );
        // Nothing after the end.
        let end = events.iter().position(|e| matches!(e, Ok(StreamEvent::Done { .. }) | Err(_)));
        prop_assert_eq!(end, Some(events.len() - 1));
        for e in &events {
            if let Err(e) = e {
                prop_assert!(matches!(e, BackendError::Protocol(_) | BackendError::Unavailable(_)), "{e}");
            }
        }
    }

    #[test]
    fn a_well_formed_answer_arrives_whole_however_it_is_chunked(
        wire in wire(),
        words in prop::collection::vec("\\PC{1,8}", 0..8),
        usage in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let body = match wire {
            Wire::Sse => sse_body(&words, usage),
            Wire::Ndjson => ndjson_body(&words),
        };
        let events = events(wire, &body, &cuts);
        let mut text = String::new();
        for e in &events[..events.len() - 1] {
            match e {
                Ok(StreamEvent::Delta(d)) => text.push_str(d),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
        prop_assert_eq!(text, words.concat());
        prop_assert!(matches!(events.last(), Some(Ok(StreamEvent::Done { .. }))), "{:?}", events.last());
    }
}
