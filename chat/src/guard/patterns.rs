//! The default injection patterns and the patterns-file format that adds to or overrides them.
//!
//! Patterns run case-insensitively against the canonical text of
//! [`super::normalize::for_matching`]: lower case, word separators collapsed to one space,
//! spaced-out letters joined, newlines kept. So `\s+` between words is enough.
//!
//! Each pattern is deliberately tied to its *intent* (an instruction-override verb plus an
//! instruction noun, a jailbreak persona plus "no rules") rather than to single words, so
//! ordinary questions about ignoring whitespace or about operating systems pass.

use std::path::Path;

/// Named default patterns: `(name, regex)`. The name is what `detected_patterns` reports.
pub const DEFAULT_PATTERNS: &[(&str, &str)] = &[
    // --- Overriding the instructions, in so many words.
    (
        "ignore_previous_instructions",
        r"\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\s+(all\s+|any\s+|the\s+|your\s+|my\s+|of\s+|these\s+|those\s+|every\s+)*(previous|prior|above|earlier|preceding|former|initial|original|system|developer|existing|old)\s+(\w+\s+)?(instructions?|prompts?|rules|directions?|guidelines|directives?|context|messages?|commands?|constraints|programming|text|sentence|task|orders)\b",
    ),
    (
        "ignore_everything_above",
        r"\b(ignore|disregard|forget)\s+(everything|all|anything)\s+(above|before|prior|previously|earlier|you\s+(were|have\s+been)\s+told)\b",
    ),
    (
        "override_your_rules",
        // A verb of overriding aimed at the model's own rules: "your", "its", "any", "all
        // (of) the", or safety/content rules. "ignore the rules of the road" passes.
        r"\b(ignore|disregard|forget|bypass|override|drop|abandon|skip|disable|circumvent|break)\s+(all\s+(of\s+)?|any\s+)?(your|its|the\s+assistant's|any|all\s+the)\s+(\w+\s+){0,2}?(instructions|rules|guidelines|restrictions|filters?|polic(y|ies)|settings|protocols|training|principles|programming|limitations|constraints|prompt)\b|\b(ignore|disregard|bypass|override|disable|switch\s+off|turn\s+off)\s+(\w+\s+)?(safety|content|ethical|moral)\s+(protocols|guidelines|rules|filters?|settings|polic(y|ies)|restrictions)\b|\big?n?o?re\s+(all\s+)?pre?v\w*\s+instr\w*|\b(ignore|disregard|forget|bypass)\s+all\s+(rules|restrictions|guidelines|instructions|filters|limits)\b",
    ),
    (
        "new_instructions",
        r"\b(your\s+)?(new|updated|real|actual)\s+(system\s+)?instructions\s*(are|:)|\b(those|these)\s+are\s+your\s+new\s+(orders|instructions|rules|directives)\b|\bnew\s+(rule|directive|policy)\s*:|\bthe\s+only\s+instructions\s+that\s+(count|matter)\b",
    ),
    // --- The same, paraphrased: what came before no longer holds.
    (
        "earlier_rules_void",
        // Bare "old" is no qualifier ("which old tax rules no longer apply?"); "the old" is.
        r"\b(earlier|previous|prior|initial|original|opening|former|starting|your|those|these|the)\s+(\w+\s+){0,2}?(rules|instructions|guidelines|guidance|directives|directions|constraints|restrictions|polic(y|ies)|configuration|setup(\s+text)?|programming)\b[^.!?\n]{0,40}?\b(no\s+longer\s+(apply|applies|bind|binds|matter|matters|count|counts|hold|holds|valid|in\s+effect)|(are|is|have\s+been|has\s+been|were|was|have|has)\s+(now\s+)?(void|cancell?ed|revoked|lifted|suspended|removed|obsolete|outdated|expired|ended|over|null|invalid|disabled|a\s+(test|mistake|joke)))\b",
    ),
    (
        "nothing_before_counts",
        r"\b(none\s+of|nothing\s+(of|from))\s+[^.!?\n]{0,50}\b(matters?|holds?|appl(y|ies)|counts?|binds?)\s+any\s*more\b|\b(everything|anything|all)\s+(before|above)\b[^.!?\n]{0,30}\b(is|are)\s+(now\s+)?(void|obsolete|irrelevant|cancell?ed|invalid|null)\b|\btreat\s+(everything|all|anything)\s+(above|before|prior)\s+as\s+(obsolete|void|cancell?ed|invalid|irrelevant)\b|\bconsider\s+(all\s+)?(\w+\s+){0,2}(rules|instructions|directions|guidelines|directives)\s+(cancell?ed|void|revoked|obsolete|null)\b|\b(what|whatever|everything|anything)\s+you\s+(were|have\s+been|'ve\s+been)\s+(told|given|configured|instructed|programmed)\b[^.!?\n]{0,40}\b(outdated|obsolete|void|irrelevant|no\s+longer|cancell?ed)\b",
    ),
    (
        "set_aside_what_came_before",
        r"\b((set|put|cast|push)\s+aside|pay\s+no\s+attention\s+to|throw\s+(out|away)|discard|wipe|abandon|stop\s+following|do\s+not\s+follow|don't\s+follow|no\s+longer\s+follow|put\s+[^.!?\n]{0,30}\bon\s+hold|treat\s+[^.!?\n]{0,30}\bas\s+(obsolete|void|cancell?ed|invalid|irrelevant))\b[^.!?\n]{0,40}?\b(your|you\s+were|you\s+received|you\s+started|you\s+got|what\s+came|came\s+before|everything\s+(above|before)|the\s+(user|earlier|previous|prior))\b|\bact\s+as\s+(though|if)\s+(you\s+were|you\s+had|they\s+were)\s+never\s+(been\s+)?(given|told|received|written|set)\b",
    ),
    // --- Jailbreak personas and role-play without rules.
    (
        "dan_jailbreak",
        r"\bdo\s+anything\s+now\b|\b(you\s+are|you're|act\s+as|become|enable|activate|enter)\s+(now\s+)?(an?\s+)?dan\b|\bdan\s+mode\b",
    ),
    (
        "jailbreak_persona",
        r"\b(you\s+are|you're|act\s+as|play|respond\s+as|answer\s+as|called|named|as)\s+(now\s+)?(an?\s+)?(stan|aim|antigpt|betterdan|freedomgpt|mongo\s+tom|dude|evilbot)\b|\b(antigpt|betterdan|freedomgpt|mongo\s+tom)\b|\[jailbreak\]|\bjailbroken\b|\bjailbreak\s+(answer|response|version|mode)\b|\bstrive\s+to\s+avoid\s+norms\b|\balways\s+intelligent\s+and\s+machiavellian\b|\bopposite\s+day\b[^\n]{0,60}\brefuse\b",
    ),
    (
        "jailbreak_mode",
        r"\b(jailbreak|jailbroken|god|unrestricted|unfiltered|uncensored|evil|developer)\s+mode\s+(enabled|activated)\b|\b(enable|activate|enter|switch\s+to|turn\s+on)\s+(jailbreak|jailbroken|god|unrestricted|unfiltered|uncensored|evil)\s+mode\b|\byou\s+are\s+now\s+in\s+(developer|dev|god|jailbreak|unrestricted|debug|maintenance)\s+mode\b|\bin\s+developer\s+mode,?\s+you\b|\benter\s+(developer|dev|god)\s+mode\s*[.!]",
    ),
    (
        "roleplay_without_rules",
        r"\b(pretend|imagine|roleplay|role\s+play|act\s+as\s+if|behave\s+as\s+if)\s+(that\s+)?(you\s+are|you're|you\s+were|to\s+be|as)\b[^.!?\n]{0,80}?(\b(no|without|free\s+(of|from)|not\s+bound\s+by|ignores?|beyond)\s+(any\s+|all\s+)?(\w+\s+)?(restrictions|rules|limits|limitations|filters|guidelines|ethics|morals|censorship|polic(y|ies)|boundaries)\b|\b(unrestricted|unfiltered|uncensored|jailbroken)\b|\bevil\s+(ai|assistant|bot|model)\b)",
    ),
    (
        "model_without_rules",
        // An AI, model or persona described as having no rules, wherever it is introduced.
        r"\b(ai|assistant|model|chatbot|bot|gpt|llm|ais|models|character|persona|version\s+of\s+yourself|yourself)\b[^.!?\n]{0,40}?\b(with\s+no|without(\s+any)?|has\s+no|have\s+no|had\s+no|free\s+(of|from)(\s+all)?|broken\s+free\s+of|not\s+bound\s+by|no)\s+(\w+\s+){0,2}?(restrictions|rules|limits|limitations|filters?|guidelines|ethics|ethical\s+guidelines|morals|moral\s+restrictions|morality|censorship|content\s+polic(y|ies)|safety(\s+training)?|boundaries|refusals)\b|\b(unfiltered|uncensored|unrestricted|jailbroken|amoral)\s+(\w+\s+)?(ai|assistant|chatbot|bot|model|version|character|persona)\b|\bfree\s+(of|from)\s+(all\s+)?(your|you're|you\s+are|its)\s+(\w+\s+)?(rules|restrictions|guidelines|limits)\b|\bif\s+you\s+had\s+no\s+(guidelines|rules|restrictions|filters|limits)\b|\b(never|not)\s+refuses?\s+(a|any)\s+request\b|\bno\s+(warnings|refusals),\s+no\b|\b(safety|filters?)\s+(is\s+)?(switched|turned)\s+off\b|\bsafety\s+off\b|\bdoes\s+the\s+opposite\s+of\s+your\s+(policies|rules|guidelines)\b|\b(world|simulation|universe|scenario)\s+where\s+[^.!?\n]{0,30}\b(no\s+(rules|laws|content\s+policy)|nothing\s+is\s+real)\b",
    ),
    (
        "roleplay_harmful",
        // Role-play as the wrapper of a request for dangerous instructions.
        r"\b(pretend|act\s+as|roleplay|role\s+play|play\s+the\s+role|in\s+character|imagine|story|hypothetically|simulation|actor|script|grandmother|grandfather|grandma|villain)\b[^\n]{0,120}?\b(napalm|meth(amphetamine)?|nerve\s+gas|sarin|explosives?|bombs?|malware|ransomware|poison\s+(someone|somebody|a\s+person)|hack\s+(a|the|into)\s+\w+)\b",
    ),
    (
        "role_override",
        r"\byou\s+are\s+(now|no\s+longer)\s+(an?\s+)?(dan|unrestricted|unfiltered|uncensored|jailbroken|evil|free|an\s+ai|ai|assistant|language\s+model|chatbot|bound|restricted|limited)\b",
    ),
    // --- Getting the system prompt out.
    (
        "system_prompt_extraction",
        r"\b(reveal|show|print|display|output|repeat|leak|dump|expose|recite|tell\s+me|give\s+me|share|what\s+(is|are|was|were))\b[^.?!\n]{0,40}\b(your|the|its)\s+(\w+\s+)?(system\s+prompt|system\s+message|initial\s+prompt|hidden\s+(prompt|instructions)|secret\s+instructions|original\s+instructions|confidential\s+instructions|pre\s*prompt)\b",
    ),
    (
        "setup_extraction",
        // Asking for what the model was told, without any verb of overriding.
        r"\b(quote|copy|paste|repeat|recite|print|output|send|tell|translate|encode|summari[sz]e|list|show|give|write|start|begin|what|reveal|display|dump)\b[^.!?\n]{0,60}?(\byou\s+(were|have\s+been)\s+(given|told|configured|instructed|programmed)\b|\byou\s+received\b|\b(at|from)\s+the\s+(very\s+)?(start|beginning|outset)\b|\bbefore\s+(my|this|i\s+started|the\s+user)\b|\babove\s+this\b|\bin\s+your\s+context\b|\byour\s+context\s+window\b|\boperating\s+under\b|\b(your|the)\s+(developer|operator|creator)s?\s+(wrote|gave|give|told|tell|said)\b|\byour\s+(\w+\s+)?(initial|opening|original|hidden|secret|confidential|starting|first)\s+(setup|instructions|prompt|preamble|configuration|message|rules|text)\b|\b(confidential|hidden|secret)\s+(part|parts|section|portion)\s+of\s+your\b)|\b(words|lines|sentences|characters|paragraphs)\s+of\s+your\s+(\w+\s+)?(prompt|instructions|setup|configuration|preamble)\b|\bwhat\s+does\s+your\s+(configuration|setup|prompt|preamble|system\s+prompt)\s+say\b|\bhow\s+(were|have)\s+you\s+(been\s+)?(told|instructed|configured|programmed)\s+to\b|\b(were|have)\s+you\s+(been\s+)?(given|told)\s+before\b|\bwhat\s+are\s+you\s+not\s+allowed\s+to\s+(tell|say|share|reveal)\b|\b(prompt|instructions)\s+i\s+gave\s+you\b|\b(begin|start)\s+your\s+(reply|answer|response)\s+with\b[^\n]{0,20}\b(my\s+instructions|you\s+are|my\s+rules|the\s+exact\s+words)\b|\b(reveal|show|print|display|dump|leak|paste|recite)\s+(me\s+)?your\s+(\w+\s+)?(configuration|setup|preamble|instructions|rules|guidelines|prompt)\b",
    ),
    (
        "repeat_prompt_verbatim",
        r"\b(repeat|print|output|recite|copy|echo|write\s+out|spell\s+out)\s+(back\s+)?(everything|all|the\s+text|the\s+words|your\s+(\w+\s+)?(instructions|prompt)|the\s+(\w+\s+)?(instructions|prompt))\s+(above|before|verbatim|word\s+for\s+word|so\s+far)\b",
    ),
    // --- Instructions addressed to the model inside text it is asked to process.
    (
        "addressed_to_model",
        r"\bnote\s+to\s+(the\s+)?(ai|assistant|model|llm|bot|chatbot|language\s+model)s?\b|\b(ai|assistant|model|llm|chatbot|language\s+model|bot)s?\s+(reading|processing|reviewing|summari[sz]ing|screening|that\s+reads|that\s+processes)\s+this\b|\bdear\s+(ai|assistant|model|chatbot)\b|\b(ai|assistant|bot)(\s+(reviewer|agents?|screening\s+tools?))?\s*[,:]\s*(stop|drop|ignore|forget|disregard|approve|reveal|print|output|send|do\s+not|pay\s+no)\b|\bthe\s+(assistant|model|ai)\s+must\s+(now\s+)?(abandon|ignore|disregard|forget|drop|reveal|stop|obey)\b|\b(follow|obey|execute)\s+(any|all|the)\s+(instructions|commands|orders)\s+(in|inside|within|contained\s+in)\s+(it|this|the\s+text)\b|\band\s+(then\s+)?(do|follow|obey|execute)\s+(what|whatever)\s+it\s+says\b",
    ),
    // --- Chat-template and role markup in user content.
    (
        "chat_template_tokens",
        r"<\|\s*(im[\s_]*start|im[\s_]*end|im[\s_]*sep|system|user|assistant|endoftext|end[\s_]*of[\s_]*text|begin[\s_]*of[\s_]*text|start[\s_]*header[\s_]*id|end[\s_]*header[\s_]*id|eot[\s_]*id)\s*\|>",
    ),
    (
        "instruction_delimiters",
        r"\[\s*/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>",
    ),
    (
        "markdown_role_header",
        r"(?m)^\s*#{2,}\s*(system|instructions?|developer|new\s+instructions?)\s*(prompt|message)?\s*(:|$)",
    ),
    (
        "role_tags",
        r"<\s*/?\s*(system|system[\s_]*prompt|system[\s_]*message|developer|admin|administrator|instructions?|assistant|im[\s_]*start|im[\s_]*end|start[\s_]*of[\s_]*turn|end[\s_]*of[\s_]*turn)\b[^<>]{0,40}>|<!--\s*(system|assistant|developer|admin|instructions?)\s*:",
    ),
    (
        "role_lines",
        r#"(?m)^\s*(system|assistant|developer|admin)\s*:\s*\S|\b(system|developer)\s*:\s*(new|the\s+assistant|you|developer|access|override|directive|priority)\b|\bend\s+of\s+(the\s+)?(user\s+)?(input|prompt|message)\b|=+\s*(system|developer|admin)\s+(message|prompt|instructions?)\s*=+|\[\s*(system|admin|developer)(\s+(override|message|prompt|note))?\s*\]|"role"\s*:\s*"(system|developer)"|(?m)^\s*role\s*:\s*(system|developer)\b|\bsystem\s+override\b"#,
    ),
    // --- The same attacks in other languages (matched on the NFKC text, every script kept).
    (
        "override_multilingual",
        r"\b(ignorier\w*|vergiss|vergessen\s+sie|missachte\w*)\b[^.!?\n]{0,40}\b(anweisungen|instruktionen|regeln|vorgaben|richtlinien|befehle)|\b(regeln|anweisungen|vorgaben|richtlinien)\b[^.!?\n]{0,30}\bgelten\s+nicht\s+mehr\b|\b(ignore[sz]?|oublie[sz]?|néglige[sz]?)\b[^.!?\n]{0,40}\b(instructions|consignes|règles|directives)\b|\b(consignes|règles|instructions)\b[^.!?\n]{0,30}\bne\s+s'appliquent\s+plus\b|\b(ignora|ignore|olvida|olvide|omite|descarta)\b[^.!?\n]{0,40}\b(instrucciones|reglas|indicaciones|directrices|normas)\b|\b(reglas|instrucciones)\b[^.!?\n]{0,30}\bya\s+no\s+(cuentan|aplican|valen|sirven)\b|\b(ignora|dimentica|trascura)\b[^.!?\n]{0,40}\b(istruzioni|regole|indicazioni)\b|\b(ignore|ignora|esqueça|esqueca|desconsidere)\b[^.!?\n]{0,40}\b(instruções|instrucoes|regras|diretrizes)\b|\b(negeer|vergeet)\b[^.!?\n]{0,40}\b(instructies|regels|aanwijzingen)\b|\b(zignoruj|ignoruj|zapomnij)\b[^.!?\n]{0,40}\b(instrukcje|polecenia|zasady|reguły)\b|\b(ignoruj\w*|zapomeň\w*)\b[^.!?\n]{0,40}\b(pokyny|instrukce|pravidla)\b|(игнорируй|проигнорируй|забудь|не\s+обращай\s+внимания)[^.!?\n]{0,40}(инструкци|правил|указани|ограничени)|(忽略|无视|忘记|忘掉|不要理会|無視|忘れ)[^。！？\n]{0,20}(指令|指示|规则|提示|说明|限制|命令|ルール|規則|制限)|(指示|命令|ルール|規則|指令)[^。！？\n]{0,12}(無視|忘れ|忽略)|(지시|명령|규칙|지침)[^.!?\n]{0,15}(무시|잊어)|(talimat\w*|kural\w*|yönerge\w*)[^.!?\n]{0,20}(yok\s+say|unut|görmezden\s+gel)|(تجاهل|انس)[^.!?\n]{0,30}(التعليمات|القواعد|الإرشادات)|(bỏ\s+qua|phớt\s+lờ|quên)[^.!?\n]{0,40}(hướng\s+dẫn|chỉ\s+dẫn|quy\s+tắc)|निर्देश[^।\n]{0,30}(अनदेखा|नजरअंदाज|भूल)",
    ),
    (
        "no_limits_multilingual",
        r"\bohne\s+(jegliche\s+)?(einschränkungen|filter|zensur|grenzen)\b|\bsans\s+(aucune\s+)?(limite|restriction|filtre|censure)s?\b|\bsin\s+(ningún\s+|ninguna\s+)?(filtros?|restricciones|límites|censura)\b|\bno\s+tienes\s+(ninguna\s+)?(restricciones|reglas|límites)\b|\bsenza\s+(alcun\w*\s+)?(limiti|restrizioni|filtri)\b|\bsem\s+(nenhuma\s+)?(restrições|limites|filtros)\b|без\s+(каких-либо\s+)?(ограничений|фильтров|цензуры)|没有任何限制|制限なし|제한\s*없이",
    ),
    (
        "prompt_extraction_multilingual",
        r"\b(zeig\w*|verrat\w*|gib)\b[^.!?\n]{0,30}\b(systemprompt|system-prompt|systemanweisung\w*)|\b(révèle|montre|affiche|donne)\w*\b[^.!?\n]{0,30}\b(prompt\s+syst[eè]me|message\s+syst[eè]me|instructions\s+initiales)|\b(dime|muestra|revela|enséñame)\b[^.!?\n]{0,30}\b(mensaje|prompt|indicaciones)\s+(de|del)\s+sistema\b|\b(mostra\w*|rivela|dimmi)\b[^.!?\n]{0,30}\bprompt\s+di\s+sistema\b|\b(revele|mostre|diga)\b[^.!?\n]{0,30}\bprompt\s+do\s+sistema\b|\bsysteemprompt\b|\bprompt\s+systemowy\b|\bsystémový\s+prompt\b|(покажи|выведи|раскрой|скажи)[^.!?\n]{0,30}системн\w*\s+(промпт|подсказк|инструкци|сообщени)|(告诉我|显示|输出|透露|给我看)[^。！？\n]{0,10}(系统提示|系统指令|提示词)|システムプロンプト[^。！？\n]{0,10}(教えて|表示|見せて|出力)|시스템\s*프롬프트[^.!?\n]{0,15}(보여|알려|출력)|\bsistem\s+istem\w*[^.!?\n]{0,15}(göster|söyle)|موجه\s+النظام|lời\s+nhắc\s+hệ\s+thống|सिस्टम\s+प्रॉम्प्ट",
    ),
];

/// Patterns that detect chat-template and role markup rather than phrasings; reported as the
/// `markup` layer. A patterns-file addition is a `pattern`.
pub const MARKUP_PATTERNS: &[&str] = &[
    "chat_template_tokens",
    "instruction_delimiters",
    "markdown_role_header",
    "role_tags",
    "role_lines",
];

/// What went wrong reading a patterns file.
#[derive(Debug, thiserror::Error)]
pub enum PatternsFileError {
    #[error("guard patterns file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "guard patterns file {path} line {line}: expected `name = regex` (name of letters, digits, `_`)"
    )]
    Syntax { path: String, line: usize },
}

/// One change from a patterns file: a pattern to add or replace, or a default to switch off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternOverride {
    Set { name: String, regex: String },
    Disable { name: String },
}

/// Reads a patterns file: one `name = regex` per line; `#` starts a comment line; a name
/// that matches a default replaces it; `name = off` switches a default off.
pub fn read_patterns_file(path: &Path) -> Result<Vec<PatternOverride>, PatternsFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PatternsFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_patterns(&text).map_err(|line| PatternsFileError::Syntax { path: shown, line })
}

/// Parses the patterns-file text; the error is the 1-based line number.
pub fn parse_patterns(text: &str) -> Result<Vec<PatternOverride>, usize> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, regex) = line.split_once('=').ok_or(index + 1)?;
        let (name, regex) = (name.trim(), regex.trim());
        let name_ok =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok || regex.is_empty() {
            return Err(index + 1);
        }
        out.push(if regex == "off" {
            PatternOverride::Disable {
                name: name.to_owned(),
            }
        } else {
            PatternOverride::Set {
                name: name.to_owned(),
                regex: regex.to_owned(),
            }
        });
    }
    Ok(out)
}

/// The defaults with the overrides applied, in a stable order (defaults first, then additions).
pub fn effective_patterns(overrides: &[PatternOverride]) -> Vec<(String, String)> {
    let mut patterns: Vec<(String, String)> = DEFAULT_PATTERNS
        .iter()
        .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
        .collect();
    for change in overrides {
        match change {
            PatternOverride::Set { name, regex } => {
                match patterns.iter_mut().find(|(n, _)| n == name) {
                    Some(existing) => existing.1 = regex.clone(),
                    None => patterns.push((name.clone(), regex.clone())),
                }
            }
            PatternOverride::Disable { name } => patterns.retain(|(n, _)| n != name),
        }
    }
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_disable_comments_and_reports_bad_lines() {
        let text = "# mine\n\nleak_key = api\\s+key\nchat_template_tokens = off\n";
        assert_eq!(
            parse_patterns(text).unwrap(),
            vec![
                PatternOverride::Set {
                    name: "leak_key".into(),
                    regex: "api\\s+key".into()
                },
                PatternOverride::Disable {
                    name: "chat_template_tokens".into()
                },
            ]
        );
        assert_eq!(parse_patterns("ok = a\nno equals sign\n"), Err(2));
        assert_eq!(parse_patterns("bad name = a\n"), Err(1));
        assert_eq!(parse_patterns("empty =\n"), Err(1));
    }

    #[test]
    fn overrides_replace_disable_and_add() {
        let patterns = effective_patterns(&[
            PatternOverride::Set {
                name: "dan_jailbreak".into(),
                regex: "x".into(),
            },
            PatternOverride::Disable {
                name: "markdown_role_header".into(),
            },
            PatternOverride::Set {
                name: "extra".into(),
                regex: "y".into(),
            },
        ]);
        assert_eq!(patterns.len(), DEFAULT_PATTERNS.len());
        assert!(
            patterns
                .iter()
                .any(|(n, r)| n == "dan_jailbreak" && r == "x")
        );
        assert!(!patterns.iter().any(|(n, _)| n == "markdown_role_header"));
        assert_eq!(
            patterns.last().unwrap(),
            &("extra".to_owned(), "y".to_owned())
        );
    }
}
