//! OpenAI's chat-completions shapes for tools, tool calls, tool choice and
//! response formats, both ways: what the provider sends upstream and what
//! the front door reads from callers and writes back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::types::{ResponseFormat, ToolCall, ToolChoice, ToolDef};

/// A tool as OpenAI writes it: `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: WireFunction,
}

/// A tool's function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFunction {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments' JSON Schema (an empty object schema when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// A tool call as OpenAI writes it in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireToolCall {
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// The function called.
    pub function: WireCalled,
}

/// The function of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCalled {
    /// Its name.
    pub name: String,
    /// Its arguments, JSON text.
    #[serde(default)]
    pub arguments: String,
}

fn function() -> String {
    "function".into()
}

/// A tool definition in OpenAI's shape.
pub fn tool_to_wire(t: &ToolDef) -> WireTool {
    WireTool {
        kind: function(),
        function: WireFunction {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: Some(t.parameters.clone()),
        },
    }
}

/// A tool definition from OpenAI's shape; the error says what is wrong.
pub fn tool_from_wire(t: WireTool) -> Result<ToolDef, String> {
    if t.kind != "function" {
        return Err(format!("tool type `{}` is not supported (function only)", t.kind));
    }
    if t.function.name.is_empty() {
        return Err("a tool has an empty name".into());
    }
    let parameters = t
        .function
        .parameters
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    if !parameters.is_object() {
        return Err(format!(
            "tool `{}`: parameters must be a JSON Schema object",
            t.function.name
        ));
    }
    Ok(ToolDef {
        name: t.function.name,
        description: t.function.description,
        parameters,
    })
}

/// A tool call in OpenAI's shape.
pub fn call_to_wire(c: &ToolCall) -> WireToolCall {
    WireToolCall {
        id: c.id.clone(),
        kind: function(),
        function: WireCalled {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        },
    }
}

/// A tool call from OpenAI's shape.
pub fn call_from_wire(c: WireToolCall) -> ToolCall {
    ToolCall {
        id: c.id,
        name: c.function.name,
        arguments: c.function.arguments,
    }
}

/// `tool_choice` in OpenAI's shape: `"auto"`, `"none"`, `"required"` or
/// `{"type": "function", "function": {"name": ...}}`.
pub fn choice_to_wire(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// `tool_choice` from OpenAI's shape.
pub fn choice_from_wire(v: &Value) -> Result<ToolChoice, String> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(format!("tool_choice `{other}` is not one of auto, none, required")),
        },
        Value::Object(_) => v
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .ok_or_else(|| {
                "tool_choice object must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}"
                    .into()
            }),
        _ => Err("tool_choice must be a string or an object".into()),
    }
}

/// `response_format` in OpenAI's shape.
pub fn format_to_wire(f: &ResponseFormat) -> Value {
    match f {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { name, schema, strict } => json!({
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": strict},
        }),
    }
}

/// `response_format` from OpenAI's shape.
pub fn format_from_wire(v: &Value) -> Result<ResponseFormat, String> {
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = v.get("json_schema").ok_or("json_schema format without `json_schema`")?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .ok_or("json_schema.name is required")?
                .to_string();
            let schema = spec.get("schema").cloned().unwrap_or_else(|| json!({}));
            if !schema.is_object() {
                return Err("json_schema.schema must be an object".into());
            }
            let strict = spec.get("strict").and_then(Value::as_bool).unwrap_or(false);
            Ok(ResponseFormat::JsonSchema { name, schema, strict })
        }
        Some(other) => Err(format!(
            "response_format type `{other}` is not one of text, json_object, json_schema"
        )),
        None => Err("response_format needs a `type`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip() {
        let tool = ToolDef {
            name: "f".into(),
            description: Some("d".into()),
            parameters: json!({"type": "object"}),
        };
        let wire = serde_json::to_value(tool_to_wire(&tool)).unwrap();
        assert_eq!(wire["type"], "function");
        assert_eq!(wire["function"]["name"], "f");
        let back = tool_from_wire(serde_json::from_value(wire).unwrap()).unwrap();
        assert_eq!(back, tool);
        let call = ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        assert_eq!(call_from_wire(call_to_wire(&call)), call);
        for c in [
            ToolChoice::Auto,
            ToolChoice::None,
            ToolChoice::Required,
            ToolChoice::Named("f".into()),
        ] {
            assert_eq!(choice_from_wire(&choice_to_wire(&c)).unwrap(), c);
        }
        for f in [
            ResponseFormat::Text,
            ResponseFormat::JsonObject,
            ResponseFormat::JsonSchema {
                name: "n".into(),
                schema: json!({"type": "object"}),
                strict: true,
            },
        ] {
            assert_eq!(format_from_wire(&format_to_wire(&f)).unwrap(), f);
        }
    }

    #[test]
    fn bad_shapes_are_refused_with_a_reason() {
        let t: WireTool = serde_json::from_value(json!({"type": "retrieval", "function": {"name": "x"}})).unwrap();
        assert!(tool_from_wire(t).unwrap_err().contains("retrieval"));
        let t: WireTool =
            serde_json::from_value(json!({"type": "function", "function": {"name": "x", "parameters": 3}})).unwrap();
        assert!(tool_from_wire(t).unwrap_err().contains("JSON Schema"));
        assert!(choice_from_wire(&json!("sometimes")).is_err());
        assert!(choice_from_wire(&json!({"type": "function"})).is_err());
        assert!(format_from_wire(&json!({"type": "xml"})).is_err());
        assert!(format_from_wire(&json!({"type": "json_schema"})).is_err());
    }
}
