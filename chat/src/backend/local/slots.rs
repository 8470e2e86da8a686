//! Which sequence of the model's KV cache a new generation runs in, and what it may keep.
//!
//! The KV cache holds a few sequences ("slots"). A slot that finished a generation keeps its
//! tokens (prompt + answer), so the next turn of the same conversation — whose prompt starts
//! with exactly those tokens — only computes what is new. No session id is needed: the
//! prompt's longest common prefix with a slot's tokens finds it, and a trimmed history
//! (older turns dropped) simply shares a shorter prefix, so stale state is never used.
//!
//! Memory is bounded by the cache's size in tokens: a running generation reserves its
//! prompt plus `max_tokens`; idle slots keep what they hold until that budget needs it, and
//! the least recently used one gives way first. Pure: the scheduler mirrors each decision
//! in llama.cpp's cache.

/// What [`SlotTable::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Admission {
    /// The slot the generation runs in.
    pub slot: usize,
    /// Leading prompt tokens already in that slot's cache; the rest must be computed.
    pub reuse: usize,
    /// Idle slots whose cache is dropped to make room.
    pub evicted: Vec<usize>,
}

#[derive(Debug)]
struct Slot<T> {
    /// The tokens this slot's sequence holds in the KV cache, from position 0.
    cached: Vec<T>,
    /// Cache cells a running generation may grow to; `None` when idle.
    reserved: Option<usize>,
    /// When the slot last finished a generation (a logical clock).
    last_used: u64,
}

#[derive(Debug)]
pub(super) struct SlotTable<T> {
    slots: Vec<Slot<T>>,
    capacity: usize,
    clock: u64,
}

impl<T: Copy + PartialEq> SlotTable<T> {
    /// `slots` sequences sharing a cache of `capacity` tokens.
    pub fn new(slots: usize, capacity: usize) -> Self {
        SlotTable {
            slots: (0..slots)
                .map(|_| Slot {
                    cached: Vec::new(),
                    reserved: None,
                    last_used: 0,
                })
                .collect(),
            capacity,
            clock: 0,
        }
    }

    /// Picks a slot for `prompt`, which will grow to at most `reserve` tokens; `None` while
    /// every slot is busy or the running generations leave too little room (try again when
    /// one ends).
    ///
    /// A prompt wholly in a slot (the same request again) is computed afresh: the model must
    /// compute at least its last token to give the logits of the next, and one token alone
    /// rounds differently from the same token in the prompt's batch — enough to change a
    /// sampled answer, and a repeated request with the same seed must get the same answer.
    /// (The exact cache in front answers true repeats anyway.)
    pub fn admit(&mut self, prompt: &[T], reserve: usize) -> Option<Admission> {
        let (slot, shared) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.reserved.is_none())
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt)))
            // The longest shared prefix; among equals the least recently used slot.
            .max_by_key(|&(i, shared)| (shared, std::cmp::Reverse(self.slots[i].last_used)))?;
        let reuse = if shared < prompt.len() { shared } else { 0 };

        let running: usize = self.slots.iter().filter_map(|s| s.reserved).sum();
        let mut idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| i != slot && self.slots[i].reserved.is_none())
            .filter(|&i| !self.slots[i].cached.is_empty())
            .collect();
        idle.sort_by_key(|&i| self.slots[i].last_used);
        let mut kept: usize = idle.iter().map(|&i| self.slots[i].cached.len()).sum();
        let mut evicted = Vec::new();
        let mut idle = idle.into_iter();
        while running + reserve + kept > self.capacity {
            let oldest = idle.next()?;
            kept -= self.slots[oldest].cached.len();
            evicted.push(oldest);
        }

        for &i in &evicted {
            self.slots[i].cached.clear();
        }
        let chosen = &mut self.slots[slot];
        chosen.cached.truncate(reuse);
        chosen.reserved = Some(reserve);
        Some(Admission {
            slot,
            reuse,
            evicted,
        })
    }

    /// The tokens `slot` holds in the cache.
    pub fn cached(&self, slot: usize) -> &[T] {
        &self.slots[slot].cached
    }

    /// Records tokens the model just computed into `slot`'s cache.
    pub fn extend(&mut self, slot: usize, tokens: &[T]) {
        self.slots[slot].cached.extend_from_slice(tokens);
    }

    /// Ends `slot`'s generation; its cache stays for the conversation's next turn.
    pub fn release(&mut self, slot: usize) {
        self.clock += 1;
        let s = &mut self.slots[slot];
        s.reserved = None;
        s.last_used = self.clock;
    }

    /// Forgets what `slot` holds (its cache was cleared after a failure).
    pub fn forget(&mut self, slot: usize) {
        self.slots[slot].cached.clear();
    }

    /// Whether a slot is free for a new generation.
    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.reserved.is_none())
    }

    /// Whether no generation is running.
    pub fn idle(&self) -> bool {
        self.slots.iter().all(|s| s.reserved.is_none())
    }
}

fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a generation of `prompt` + `answer` through the table, as the scheduler does.
    fn turn(table: &mut SlotTable<u32>, prompt: &[u32], answer: &[u32]) -> Admission {
        let admission = table.admit(prompt, prompt.len() + answer.len()).unwrap();
        table.extend(admission.slot, &prompt[admission.reuse..]);
        table.extend(admission.slot, answer);
        table.release(admission.slot);
        admission
    }

    #[test]
    fn the_next_turn_of_a_conversation_reuses_its_slot() {
        let mut table = SlotTable::new(2, 100);
        let first = turn(&mut table, &[1, 2, 3], &[4, 5]);
        assert_eq!(first.reuse, 0);
        // Another conversation takes the other slot rather than evicting the first.
        let other = turn(&mut table, &[9, 9], &[8]);
        assert_ne!(other.slot, first.slot);
        let second = turn(&mut table, &[1, 2, 3, 4, 5, 6, 7], &[8]);
        assert_eq!((second.slot, second.reuse), (first.slot, 5));
        assert!(second.evicted.is_empty());
    }

    #[test]
    fn a_trimmed_history_reuses_only_the_shared_prefix() {
        let mut table = SlotTable::new(1, 100);
        turn(&mut table, &[1, 2, 3, 4], &[5]);
        // The system prompt (1) stays, the oldest turn (2, 3) was dropped.
        let trimmed = turn(&mut table, &[1, 4, 5, 6], &[7]);
        assert_eq!(trimmed.reuse, 1);
        assert_eq!(table.cached(0), &[1, 4, 5, 6, 7]);
    }

    #[test]
    fn a_repeated_prompt_is_computed_afresh() {
        let mut table = SlotTable::new(1, 100);
        turn(&mut table, &[1, 2, 3], &[4]);
        assert_eq!(turn(&mut table, &[1, 2, 3], &[4]).reuse, 0);
        assert_eq!(table.cached(0), &[1, 2, 3, 4]);
    }

    #[test]
    fn idle_caches_give_way_least_recently_used_first() {
        let mut table = SlotTable::new(3, 10);
        let a = turn(&mut table, &[1, 1, 1], &[1]);
        let b = turn(&mut table, &[2, 2, 2], &[2]);
        // 4 + 4 cached; a 6-token generation needs the oldest (a) gone, not b.
        let c = table.admit(&[3, 3], 6).unwrap();
        assert_eq!(c.evicted, vec![a.slot]);
        assert!(table.cached(a.slot).is_empty());
        assert_eq!(table.cached(b.slot).len(), 4);
    }

    #[test]
    fn running_generations_keep_their_room_and_busy_slots_are_not_shared() {
        let mut table = SlotTable::new(2, 10);
        let running = table.admit(&[1, 2], 8).unwrap();
        assert_eq!(table.admit(&[3], 3), None, "8 + 3 exceed 10: wait");
        assert!(table.admit(&[3], 2).is_some());
        assert_eq!(table.admit(&[4], 1), None, "both slots busy");
        assert!(!table.has_free_slot());
        table.release(running.slot);
        assert!(table.has_free_slot());
        assert!(table.admit(&[4], 1).is_some());
        assert!(!table.idle());
    }
}
