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
    /// Leading prompt tokens already in the cache; the rest must be computed.
    pub reuse: usize,
    /// The slot whose first `reuse` cells are shared into `slot` (llama.cpp's sequence copy
    /// adds a sequence to the cells, it moves no data); `None` when `slot` holds them itself.
    pub donor: Option<usize>,
    /// Idle slots whose cache is dropped to make room (after the copy from the donor).
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
    /// Where its last generation started computing (the prompt tokens it reused).
    computed_from: usize,
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
                    computed_from: 0,
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
    /// The prompt's longest prefix anywhere in the cache is reused — a running generation's
    /// computed tokens included, so sessions sharing a system prompt compute it once. The
    /// generation runs in the slot holding that prefix when the prompt goes on from at least
    /// half of what the slot holds (the conversation's next turn, or its trimmed history) or
    /// repeats a prompt it holds; otherwise in an empty slot, else the least recently used idle one, so a new
    /// conversation that merely shares a system prompt does not overwrite another's turns.
    ///
    /// A prompt wholly in a slot (the same request again) is computed again in that slot
    /// from where it was computed the first time, not from its end: the model must compute
    /// at least its last token to give the logits of the next, and the same tokens in another
    /// batch, or in other cells of the cache, round differently — enough to change a sampled
    /// answer, and a repeated request with the same seed must get the same answer. (The exact
    /// cache in front answers true repeats anyway.)
    pub fn admit(&mut self, prompt: &[T], reserve: usize) -> Option<Admission> {
        let is_idle = |i: usize| self.slots[i].reserved.is_none();
        let (holder, shared) = (0..self.slots.len())
            .map(|i| (i, common_prefix(&self.slots[i].cached, prompt)))
            // The longest shared prefix; among equals an idle slot, which may be run in.
            .max_by_key(|&(i, shared)| (shared, is_idle(i)))?;
        let repeat = shared == prompt.len();
        let reuse = match repeat {
            false => shared,
            true if self.slots[holder].computed_from < shared => self.slots[holder].computed_from,
            true => 0,
        };
        let own_turn = 2 * shared >= self.slots[holder].cached.len() || repeat;
        let slot = if is_idle(holder) && own_turn {
            holder
        } else {
            (0..self.slots.len())
                .filter(|&i| is_idle(i))
                .min_by_key(|&i| (!self.slots[i].cached.is_empty(), self.slots[i].last_used))?
        };

        let running: usize = self.slots.iter().filter_map(|s| s.reserved).sum();
        let mut idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| i != slot && is_idle(i) && !self.slots[i].cached.is_empty())
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

        // Shared cells count in both slots: the budget over-counts, never under.
        let donor = (slot != holder && reuse > 0).then_some(holder);
        let cached = match donor {
            Some(d) => self.slots[d].cached[..reuse].to_vec(),
            None => {
                let mut own = std::mem::take(&mut self.slots[slot].cached);
                own.truncate(reuse);
                own
            }
        };
        for &i in &evicted {
            self.slots[i].cached.clear();
        }
        let chosen = &mut self.slots[slot];
        chosen.cached = cached;
        chosen.reserved = Some(reserve);
        chosen.computed_from = reuse;
        Some(Admission {
            slot,
            reuse,
            donor,
            evicted,
        })
    }

    /// Cache cells no running generation has reserved and no idle slot holds.
    pub fn room(&self) -> usize {
        let used: usize = self
            .slots
            .iter()
            .map(|s| s.reserved.unwrap_or(s.cached.len()).max(s.cached.len()))
            .sum();
        self.capacity.saturating_sub(used)
    }

    /// The tokens `slot` holds in the cache.
    pub fn cached(&self, slot: usize) -> &[T] {
        &self.slots[slot].cached
    }

    /// Leading prompt tokens `slot`'s current (or last) generation took from the cache.
    pub fn computed_from(&self, slot: usize) -> usize {
        self.slots[slot].computed_from
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

    /// The generation just admitted to `slot` computes its whole prompt after all (the
    /// cache it would have gone on from is incomplete).
    pub fn restart(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.cached.clear();
        s.computed_from = 0;
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
    fn a_repeated_prompt_is_computed_again_from_where_it_was_the_first_time() {
        let mut table = SlotTable::new(2, 100);
        turn(&mut table, &[1, 2, 3], &[4]);
        let second = turn(&mut table, &[1, 2, 3, 4, 5], &[6]);
        assert_eq!(second.reuse, 4);
        let again = turn(&mut table, &[1, 2, 3, 4, 5], &[6]);
        assert_eq!(
            (again.slot, again.reuse, again.donor),
            (second.slot, 4, None)
        );
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

    #[test]
    fn a_new_conversation_sharing_a_system_prompt_leaves_the_others_turns_alone() {
        let mut table = SlotTable::new(2, 100);
        // System prompt [7, 7], then a conversation's turns.
        let a = turn(&mut table, &[7, 7, 1, 1, 1, 1], &[2, 2]);
        let b = table.admit(&[7, 7, 3], 4).unwrap();
        assert_ne!(
            b.slot, a.slot,
            "an empty slot, not the other conversation's"
        );
        assert_eq!((b.reuse, b.donor), (2, Some(a.slot)));
        assert_eq!(table.cached(b.slot), &[7, 7]);
        assert_eq!(table.cached(a.slot), &[7, 7, 1, 1, 1, 1, 2, 2]);
    }

    #[test]
    fn a_running_generations_computed_prefix_is_shared() {
        let mut table = SlotTable::new(2, 100);
        let a = table.admit(&[1, 2, 3, 4], 10).unwrap();
        table.extend(a.slot, &[1, 2, 3]);
        let b = table.admit(&[1, 2, 3, 4, 9], 10).unwrap();
        assert_eq!((b.reuse, b.donor), (3, Some(a.slot)));
    }

    #[test]
    fn a_shared_prefix_survives_its_donors_eviction() {
        let mut table = SlotTable::new(2, 12);
        let a = turn(&mut table, &[5, 5, 5, 6, 6, 6], &[6]);
        // 7 cached + 8 reserved exceed 12: the donor is evicted, after lending its prefix.
        let b = table.admit(&[5, 5, 5, 8], 8).unwrap();
        assert_eq!(
            (b.reuse, b.donor, b.evicted),
            (3, Some(a.slot), vec![a.slot])
        );
        assert_eq!(table.cached(b.slot), &[5, 5, 5]);
        assert!(table.cached(a.slot).is_empty());
    }

    #[test]
    fn room_is_what_neither_reservations_nor_idle_caches_take() {
        let mut table = SlotTable::new(3, 20);
        turn(&mut table, &[1, 1, 1], &[1]);
        assert_eq!(table.room(), 16);
        let running = table.admit(&[2], 6).unwrap();
        assert_eq!(table.room(), 10);
        table.extend(running.slot, &[2]);
        assert_eq!(
            table.room(),
            10,
            "computed tokens stay within the reservation"
        );
    }
}
