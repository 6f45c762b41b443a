//! What the simulated provider answers to tools and response formats: a
//! call of the tool the request asks for, with arguments built from the
//! tool's JSON Schema, or text shaped as the response format wants.

use serde_json::{Map, Value, json};

use crate::llm::types::{ProviderRequest, ResponseFormat, Role, ToolCall, ToolChoice, ToolDef};

/// The tool the model calls for `req`, if any: the named one, or the first
/// tool when the choice is `required`, or `auto` and the conversation's
/// last turn is not a tool's result (the model answers those in text).
pub(super) fn tool_to_call(req: &ProviderRequest) -> Option<&ToolDef> {
    match &req.tool_choice {
        ToolChoice::None => None,
        ToolChoice::Named(name) => req.tools.iter().find(|t| &t.name == name),
        ToolChoice::Required => req.tools.first(),
        ToolChoice::Auto => {
            let answered = req.messages.last().is_some_and(|m| m.role == Role::Tool);
            (!answered).then(|| req.tools.first()).flatten()
        }
    }
}

/// A call of `tool` with arguments that satisfy its schema, with an id
/// derived from `seed`.
pub(super) fn call(tool: &ToolDef, seed: u64, words: &[&str]) -> ToolCall {
    ToolCall {
        id: format!("call_{seed:016x}"),
        name: tool.name.clone(),
        arguments: example(&tool.parameters, words, 0).to_string(),
    }
}

/// `text` in the shape `format` asks for.
pub(super) fn shaped(format: &ResponseFormat, text: &str) -> String {
    match format {
        ResponseFormat::Text => text.to_string(),
        ResponseFormat::JsonObject => json!({ "answer": text.trim() }).to_string(),
        ResponseFormat::JsonSchema { schema, .. } => {
            let words: Vec<&str> = text.split_whitespace().collect();
            example(schema, &words, 0).to_string()
        }
    }
}

/// Deepest nesting of a schema that is followed; deeper parts become null.
const MAX_DEPTH: usize = 16;

/// A value that satisfies the common parts of a JSON Schema: `type`
/// (object with every property, array with one item, string, integer,
/// number, boolean, null), `enum` and `const` (their first value). Strings
/// are taken from `words`.
fn example(schema: &Value, words: &[&str], depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(v) = schema.get("const") {
        return v.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // A list of types: the first that is not null.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (i, (name, sub)) in props.iter().enumerate() {
                    let rest = words.get(i..).unwrap_or_default();
                    out.insert(name.clone(), example(sub, rest, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let item = schema
                .get("items")
                .map_or(Value::Null, |s| example(s, words, depth + 1));
            Value::Array(vec![item])
        }
        "integer" => json!(words.len()),
        "number" => json!(words.len() as f64 / 2.0),
        "boolean" => json!(!words.is_empty()),
        "null" => Value::Null,
        _ => Value::String(words.first().map_or("value", |w| w.trim()).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::types::Message;

    fn weather() -> ToolDef {
        ToolDef {
            name: "weather".into(),
            description: None,
            parameters: json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "detail": {"type": ["null", "boolean"]},
                    "hours": {"type": "array", "items": {"type": "number"}}
                },
                "required": ["city"]
            }),
        }
    }

    fn req(choice: ToolChoice, last: Message) -> ProviderRequest {
        ProviderRequest {
            messages: vec![Message::user("weather in Paris?"), last],
            tools: vec![
                ToolDef {
                    name: "search".into(),
                    description: None,
                    parameters: json!({"type": "object"}),
                },
                weather(),
            ],
            tool_choice: choice,
            ..ProviderRequest::default()
        }
    }

    #[test]
    fn the_choice_decides_which_tool_is_called() {
        let user = Message::user("go");
        let result = Message::tool_result("call_1", "sunny");
        assert_eq!(
            tool_to_call(&req(ToolChoice::Auto, user.clone())).unwrap().name,
            "search"
        );
        assert!(tool_to_call(&req(ToolChoice::Auto, result.clone())).is_none());
        assert_eq!(tool_to_call(&req(ToolChoice::Required, result)).unwrap().name, "search");
        assert_eq!(
            tool_to_call(&req(ToolChoice::Named("weather".into()), user.clone()))
                .unwrap()
                .name,
            "weather"
        );
        assert!(tool_to_call(&req(ToolChoice::Named("nope".into()), user.clone())).is_none());
        assert!(tool_to_call(&req(ToolChoice::None, user)).is_none());
    }

    #[test]
    fn arguments_follow_the_schema() {
        let c = call(&weather(), 7, &["Paris", "two"]);
        assert_eq!(c.id, "call_0000000000000007");
        let args: Value = serde_json::from_str(&c.arguments).unwrap();
        assert_eq!(args["city"], "Paris");
        assert_eq!(args["days"], 1);
        assert_eq!(args["unit"], "celsius");
        assert_eq!(args["detail"], false);
        assert!(args["hours"][0].is_number());
    }

    #[test]
    fn text_is_shaped_as_the_format_asks() {
        assert_eq!(shaped(&ResponseFormat::Text, " a b"), " a b");
        let obj: Value = serde_json::from_str(&shaped(&ResponseFormat::JsonObject, " a b")).unwrap();
        assert_eq!(obj["answer"], "a b");
        let format = ResponseFormat::JsonSchema {
            name: "w".into(),
            schema: weather().parameters,
            strict: true,
        };
        let v: Value = serde_json::from_str(&shaped(&format, "The data")).unwrap();
        assert_eq!(v["city"], "The");
        // A schema nested deeper than followed ends in null, not a stack overflow.
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        let format = ResponseFormat::JsonSchema {
            name: "deep".into(),
            schema: deep,
            strict: false,
        };
        assert!(serde_json::from_str::<Value>(&shaped(&format, "x")).is_ok());
    }
}
