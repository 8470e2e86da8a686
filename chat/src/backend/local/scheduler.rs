//! The model thread: continuous batching over the slots of one llama.cpp context.
//!
//! Each step decodes one batch holding the next token of every generation that is producing
//! tokens, then fills what room is left with prompt tokens of generations still reading
//! their prompt (in chunks, so a long prompt does not stall the others). New requests join
//! between steps, as soon as a slot and cache room are free ([`SlotTable`]). Tokens go back
//! through an unbounded channel per request (at most `max_tokens` items), so a slow reader
//! never blocks the other generations; a closed channel — the client went away — frees its
//! slot before the next step.
//!
//! When nothing has run or waited for a moment, the model thread computes ahead what a
//! finished conversation's next turn will certainly start with — the answer's last token and
//! the chat template's hand-over to the user (`<|im_end|>\n<|im_start|>user\n` in ChatML) —
//! so the next turn's first token waits only for the user's new words. Only tokens that the
//! next prompt really repeats are ever used: reuse goes by exact token prefix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::slots::{Admission, SlotTable};
use crate::backend::stop::{StopMatcher, StopOutcome};
use crate::backend::{BackendError, FinishReason, Result, StreamEvent, Usage};

/// Tokens whose repetition is penalised (a 135M model loops easily under greedy decoding).
const REPEAT_LAST_N: i32 = 64;

/// How long the model stays idle before it computes ahead the next turns' openings.
const AHEAD_AFTER_IDLE: Duration = Duration::from_millis(50);

/// One request, as the model thread receives it.
pub(super) struct Job {
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: usize,
    pub temperature: f64,
    pub seed: u64,
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<Result<StreamEvent>>,
}

/// A generation in a slot.
struct Running {
    job: Job,
    sampler: LlamaSampler,
    stops: StopMatcher,
    /// Joins the bytes of a character split across tokens.
    utf8: encoding_rs::Decoder,
    /// The token sampled last, `None` while reading the prompt: decoded in the next step
    /// while the generation goes on; once it ended, where its next turn's opening starts.
    next: Option<LlamaToken>,
    generated: usize,
}

pub(super) struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    table: SlotTable<LlamaToken>,
    batch: LlamaBatch<'static>,
    /// Tokens per decode call.
    n_batch: usize,
    repeat_penalty: f32,
    /// The generation running in each slot.
    running: Vec<Option<Running>>,
    /// The template's tokens between an answer and the next user message.
    next_turn: Vec<LlamaToken>,
    /// The attention window of a sliding-window model's local layers.
    sliding_window: Option<usize>,
    /// Per idle slot, tokens its conversation's next turn will start with, to compute while
    /// the model has nothing else to do.
    ahead: Vec<Vec<LlamaToken>>,
}

/// What one slot put into the batch being decoded.
struct Fed {
    slot: usize,
    from: usize,
    to: usize,
    /// Index of the token whose logits are sampled, when the slot needs the next token.
    logits: Option<i32>,
}

impl<'m> Scheduler<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        slots: usize,
        n_batch: usize,
        repeat_penalty: f32,
        next_turn: Vec<LlamaToken>,
        sliding_window: Option<usize>,
    ) -> Self {
        Scheduler {
            model,
            table: SlotTable::new(slots, ctx.n_ctx() as usize),
            ctx,
            batch: LlamaBatch::new(n_batch, slots as i32),
            n_batch,
            repeat_penalty,
            running: (0..slots).map(|_| None).collect(),
            next_turn,
            sliding_window,
            ahead: vec![Vec::new(); slots],
        }
    }

    /// Serves `queue` until every sender is dropped and the last generation has ended, or
    /// until `stop` is set (the backend was dropped): then at once, ending the streams of
    /// generations still running without their `Done`.
    pub fn run(mut self, queue: Receiver<Job>, stop: &AtomicBool) {
        let mut waiting: Option<Job> = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            self.drop_abandoned();
            if self.table.idle() && waiting.is_none() {
                // A client sending its next request at once is not kept waiting by work
                // done ahead; a person's next turn comes seconds later.
                let next = if self.ahead.iter().any(|t| !t.is_empty()) {
                    match queue.recv_timeout(AHEAD_AFTER_IDLE) {
                        Err(RecvTimeoutError::Timeout) => {
                            self.compute_ahead();
                            queue.recv().map_err(|_| ())
                        }
                        other => other.map_err(|_| ()),
                    }
                } else {
                    queue.recv().map_err(|_| ())
                };
                match next {
                    Ok(job) => waiting = Some(job),
                    Err(()) => return,
                }
            }
            // Admit what fits; a job that does not stays first in line. Jobs stay in the
            // queue while no slot is free, so its bound is what waits.
            loop {
                if waiting.is_none() && !self.table.has_free_slot() {
                    break;
                }
                let job = match waiting.take().map_or_else(|| queue.try_recv(), Ok) {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                };
                if job.events.is_closed() {
                    continue;
                }
                match self
                    .table
                    .admit(&job.prompt, job.prompt.len() + job.max_tokens)
                {
                    Some(admission) => self.start(job, admission),
                    None => {
                        waiting = Some(job);
                        break;
                    }
                }
            }
            if !self.table.idle()
                && let Err(e) = self.step()
            {
                self.fail_all(&e);
            }
        }
    }

    fn start(&mut self, job: Job, admission: Admission) {
        let Admission {
            slot,
            mut reuse,
            mut donor,
            evicted,
        } = admission;
        // A sliding-window model (Gemma 2, Gemma 3) keeps only the last window of a sequence
        // in its local layers' cache and gives cells that left it to whatever sequence needs
        // room. Going on from position `reuse` needs the window before it: a sequence that
        // lost it is computed afresh (as llama-server does), else its first new tokens would
        // silently attend to fewer tokens than they should. A full-attention cache always
        // starts at position 0.
        let source = donor.unwrap_or(slot) as i32;
        if reuse > 0 && !self.window_covers(self.ctx.kv_cache_seq_pos_min(source), reuse) {
            self.table.restart(slot);
            reuse = 0;
            donor = None;
        }
        tracing::debug!(
            slot,
            reuse,
            prompt = job.prompt.len(),
            shared_from = donor,
            "local model: generation admitted"
        );
        match donor {
            Some(donor) => {
                self.clear(slot, 0);
                // Positions fit in u32 (the cache is smaller).
                let _ = self.ctx.copy_kv_cache_seq(
                    donor as i32,
                    slot as i32,
                    Some(0),
                    Some(reuse as u32),
                );
            }
            None => self.clear(slot, reuse),
        }
        for evicted in evicted {
            self.clear(evicted, 0);
            self.ahead[evicted].clear();
        }
        self.ahead[slot].clear();
        let sampler = self.sampler(&job);
        self.running[slot] = Some(Running {
            stops: StopMatcher::new(&job.stop),
            job,
            sampler,
            utf8: encoding_rs::UTF_8.new_decoder(),
            next: None,
            generated: 0,
        });
    }

    fn sampler(&self, job: &Job) -> LlamaSampler {
        let mut chain = Vec::new();
        if self.repeat_penalty != 1.0 {
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                REPEAT_LAST_N,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if job.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.push(LlamaSampler::temp(job.temperature as f32));
            // llama.cpp seeds with 32 bits; fold the high half in.
            chain.push(LlamaSampler::dist((job.seed ^ (job.seed >> 32)) as u32));
        }
        LlamaSampler::chain_simple(chain)
    }

    /// Whether a sequence whose cache starts at `pos_min` still holds what a token at
    /// `position` attends to: all of it for full attention (unknown window: the whole
    /// sequence), the last window before it for a sliding-window model.
    fn window_covers(&self, pos_min: i32, position: usize) -> bool {
        let needed = self
            .sliding_window
            .map_or(0, |window| position.saturating_sub(window));
        usize::try_from(pos_min).is_ok_and(|pos_min| pos_min <= needed)
    }

    /// Drops `slot`'s cache from position `from` on.
    fn clear(&mut self, slot: usize, from: usize) {
        // Removing a whole sequence or its tail cannot fail; positions fit in u32.
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(slot as u32), Some(from as u32), None);
    }

    /// Frees the slots of clients that went away (their cache stays usable).
    fn drop_abandoned(&mut self) {
        for slot in 0..self.running.len() {
            if self.running[slot]
                .as_ref()
                .is_some_and(|r| r.job.events.is_closed())
            {
                self.running[slot] = None;
                self.table.release(slot);
            }
        }
    }

    /// Decodes one batch and samples the next token of every slot that needs one.
    fn step(&mut self) -> std::result::Result<(), String> {
        self.batch.clear();
        let mut fed = Vec::new();
        let mut room = self.n_batch;
        // Generating slots first: one token each.
        for (slot, running) in self.running.iter().enumerate() {
            if let Some(token) = running.as_ref().and_then(|r| r.next) {
                let pos = self.table.cached(slot).len();
                self.batch
                    .add(token, pos as i32, &[slot as i32], true)
                    .map_err(|e| e.to_string())?;
                fed.push(Fed {
                    slot,
                    from: 0,
                    to: 0,
                    logits: Some(self.batch.n_tokens() - 1),
                });
                room -= 1;
            }
        }
        // Then prompt tokens, as many as fit.
        for (slot, running) in self.running.iter().enumerate() {
            let Some(r) = running.as_ref().filter(|r| r.next.is_none()) else {
                continue;
            };
            let from = self.table.cached(slot).len();
            let to = r.job.prompt.len().min(from + room);
            if to == from {
                continue;
            }
            for (pos, &token) in r.job.prompt.iter().enumerate().take(to).skip(from) {
                let last = pos + 1 == r.job.prompt.len();
                self.batch
                    .add(token, pos as i32, &[slot as i32], last)
                    .map_err(|e| e.to_string())?;
            }
            let done = to == r.job.prompt.len();
            fed.push(Fed {
                slot,
                from,
                to,
                logits: done.then(|| self.batch.n_tokens() - 1),
            });
            room -= to - from;
        }
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| e.to_string())?;

        for Fed {
            slot,
            from,
            to,
            logits,
        } in fed
        {
            let Some(mut r) = self.running[slot].take() else {
                continue;
            };
            match r.next.take() {
                Some(token) => self.table.extend(slot, &[token]),
                None => self.table.extend(slot, &r.job.prompt[from..to]),
            }
            let outcome = match logits {
                Some(index) => self.sample(&mut r, index),
                None => None,
            };
            match outcome {
                None => self.running[slot] = Some(r),
                Some(finish) => {
                    if let Some(reason) = finish {
                        self.ahead[slot] = self.next_turn_of(&r, reason);
                        finish_generation(r, reason, self.table.computed_from(slot));
                    }
                    self.table.release(slot);
                }
            }
        }
        Ok(())
    }

    /// Samples the next token: `None` to go on, `Some(Some(reason))` when the generation
    /// ended, `Some(None)` when its client went away.
    fn sample(&self, r: &mut Running, index: i32) -> Option<Option<FinishReason>> {
        let token = r.sampler.sample(&self.ctx, index);
        r.next = Some(token);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return Some(Some(FinishReason::Stop));
        }
        r.generated += 1;
        // Control tokens render as nothing (special = false), as the answer must not show them.
        let bytes = vocab.token_to_piece(token, false, None);
        let room = r
            .utf8
            .max_utf8_buffer_length(bytes.len())
            .unwrap_or(4 * bytes.len() + 4);
        let mut piece = String::with_capacity(room);
        let _ = r.utf8.decode_to_string(&bytes, &mut piece, false);
        if !piece.is_empty() {
            let (ready, stopped) = match r.stops.push(&piece) {
                StopOutcome::Continue(ready) => (ready, false),
                StopOutcome::Stopped(ready) => (ready, true),
            };
            if !send(&r.job.events, ready) {
                return Some(None);
            }
            if stopped {
                return Some(Some(FinishReason::Stop));
            }
        }
        if r.generated >= r.job.max_tokens {
            return Some(Some(FinishReason::Length));
        }
        None
    }

    /// What a finished generation's next turn starts with, beyond what the slot holds: the
    /// last sampled token (never decoded) unless it ended the answer, then the template's
    /// hand-over to the user. Nothing after a stop string: the answer the client keeps is
    /// cut before tokens the slot holds, so its next prompt parts from them anyway.
    fn next_turn_of(&self, r: &Running, reason: FinishReason) -> Vec<LlamaToken> {
        let Some(last) = r.next else {
            return Vec::new();
        };
        let ended_by_model = self.model.vocab().is_eog(last);
        if self.next_turn.is_empty() || (reason == FinishReason::Stop && !ended_by_model) {
            return Vec::new();
        }
        let mut tokens = Vec::with_capacity(self.next_turn.len() + 1);
        if !ended_by_model {
            tokens.push(last);
        }
        tokens.extend_from_slice(&self.next_turn);
        tokens
    }

    /// Computes the idle slots' [`Self::next_turn_of`] tokens, in one batch, as far as the
    /// cache has room. Called only when no generation runs and none waits; a decode error
    /// leaves the slots as they were.
    fn compute_ahead(&mut self) {
        self.batch.clear();
        let mut fed = Vec::new();
        let mut room = self.table.room().min(self.n_batch);
        for slot in 0..self.ahead.len() {
            let tokens = std::mem::take(&mut self.ahead[slot]);
            if tokens.is_empty() || tokens.len() > room || self.table.cached(slot).is_empty() {
                continue;
            }
            let from = self.table.cached(slot).len();
            for (i, &token) in tokens.iter().enumerate() {
                if self
                    .batch
                    .add(token, (from + i) as i32, &[slot as i32], false)
                    .is_err()
                {
                    return;
                }
            }
            room -= tokens.len();
            fed.push((slot, from, tokens));
        }
        if fed.is_empty() {
            return;
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => {
                for (slot, _, tokens) in fed {
                    self.table.extend(slot, &tokens);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "local model: computing ahead failed");
                for (slot, from, _) in fed {
                    self.clear(slot, from);
                }
            }
        }
    }

    /// A failed decode: every running generation gets the error, and the slots' caches
    /// (in an unknown state) are dropped.
    fn fail_all(&mut self, error: &str) {
        tracing::error!(%error, "the local model failed during a generation");
        for slot in 0..self.running.len() {
            if let Some(r) = self.running[slot].take() {
                let _ = r.job.events.send(Err(BackendError::Model(format!(
                    "the model failed during generation: {error}"
                ))));
                self.clear(slot, 0);
                self.table.forget(slot);
                self.table.release(slot);
            }
        }
    }
}

/// Sends what the stop matcher held back and the final event; `cached_prompt` prompt tokens
/// came from the cache.
fn finish_generation(mut r: Running, finish_reason: FinishReason, cached_prompt: usize) {
    // Text held back as a possible stop-string start is part of the answer after all
    // (empty when a stop string ended generation).
    if send(&r.job.events, r.stops.finish()) {
        let usage = Usage::new(r.job.prompt.len() as u32, r.generated as u32)
            .with_cached_prompt(cached_prompt as u32);
        let _ = r.job.events.send(Ok(StreamEvent::Done {
            finish_reason,
            usage,
        }));
    }
}

/// Sends a non-empty delta; false when the caller has gone.
fn send(events: &mpsc::UnboundedSender<Result<StreamEvent>>, text: String) -> bool {
    text.is_empty() || events.send(Ok(StreamEvent::Delta(text))).is_ok()
}
