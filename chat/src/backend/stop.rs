//! Stop strings over streamed text: a stop string may arrive split across tokens, so text
//! that could be the start of one is held back until it is known not to be.

/// Feeds streamed text, hands back what may be sent, and says when a stop string appeared.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What [`StopMatcher::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to send now (may be empty).
    Continue(String),
    /// A stop string was found: the text before it, and generation must end.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.pending.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min();
        if let Some(at) = first_stop {
            let before = self.pending[..at].to_string();
            self.pending.clear();
            return StopOutcome::Stopped(before);
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let held = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.pending, stop))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - held;
        let ready = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopOutcome::Continue(ready)
    }

    /// The held-back text, at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_split_across_pushes_is_found_and_not_sent() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("hello E"), StopOutcome::Continue("hello ".into()));
        assert_eq!(m.push("N"), StopOutcome::Continue(String::new()));
        assert_eq!(m.push("D tail"), StopOutcome::Stopped(String::new()));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("E"), StopOutcome::Continue(String::new()));
        assert_eq!(m.push("x"), StopOutcome::Continue("Ex".into()));
        assert_eq!(m.push("EN"), StopOutcome::Continue(String::new()));
        assert_eq!(m.finish(), "EN");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(&["b".to_string(), "a".to_string()]);
        assert_eq!(m.push("xxaxxb"), StopOutcome::Stopped("xx".into()));
    }

    #[test]
    fn multibyte_text_is_not_split() {
        let mut m = StopMatcher::new(&["é!".to_string()]);
        assert_eq!(m.push("caf"), StopOutcome::Continue("caf".into()));
        assert_eq!(m.push("é"), StopOutcome::Continue(String::new()));
        assert_eq!(m.push("?"), StopOutcome::Continue("é?".into()));
    }
}
