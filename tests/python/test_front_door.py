"""`nexus serve` driven by the official `openai` Python client.

Run by `scripts/front_door_openai_client.sh`, which starts two servers and
sets the keys' tokens in the environment: NEXUS_BASE_URL is a server over
the simulated provider; NEXUS_RELAY_BASE_URL is a second server whose
provider is the first one over HTTP (a real OpenAI-compatible upstream on
127.0.0.1, streams included).
"""

import json
import os
import unittest

import openai

BASE_URL = os.environ["NEXUS_BASE_URL"]
RELAY_BASE_URL = os.environ["NEXUS_RELAY_BASE_URL"]
OPEN = os.environ["NEXUS_KEY_OPEN"]
LIMITED = os.environ["NEXUS_KEY_LIMITED"]
POOR = os.environ["NEXUS_KEY_POOR"]


def client(key, base_url=BASE_URL):
    # No retries: the tests look at the first answer, 429s included.
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def collect(stream):
    """Text, tool calls (assembled from their pieces), finish reason and
    usage of a stream, and how many chunks carried text."""
    text, calls, finish, usage, pieces = "", {}, None, None, 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text += delta.content
                pieces += 1
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                if call.id:
                    entry["id"] = call.id
                if call.function and call.function.name:
                    entry["name"] = call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return text, [calls[i] for i in sorted(calls)], finish, usage, pieces


def ask(key, text, max_tokens=64, **extra):
    return client(key).chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        **extra,
    )


class FrontDoor(unittest.TestCase):
    def test_completion(self):
        raw = client(OPEN).chat.completions.with_raw_response.create(
            model="small",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Plan the survey."},
            ],
            max_tokens=64,
            temperature=0,
            user="ada",
        )
        self.assertIsNotNone(raw.headers.get("x-nexus-added-us"))
        self.assertEqual(raw.headers.get("x-ratelimit-limit-tokens"), "100000")
        answer = raw.parse()
        self.assertEqual(answer.object, "chat.completion")
        self.assertEqual(answer.model, "small")
        self.assertEqual(answer.choices[0].message.role, "assistant")
        self.assertTrue(answer.choices[0].message.content)
        self.assertIn(answer.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(answer.usage.prompt_tokens, 0)
        self.assertLessEqual(answer.usage.completion_tokens, 64)
        self.assertEqual(
            answer.usage.total_tokens,
            answer.usage.prompt_tokens + answer.usage.completion_tokens,
        )

    def test_models(self):
        models = [m.id for m in client(OPEN).models.list()]
        self.assertEqual(models, ["small"])

    def test_streaming(self):
        stream = ask(OPEN, "Stream this.", stream=True, stream_options={"include_usage": True})
        text, calls, finish, usage, pieces = collect(stream)
        self.assertTrue(text)
        self.assertGreater(pieces, 1)
        self.assertEqual(calls, [])
        self.assertIn(finish, ("stop", "length"))
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertGreater(usage.completion_tokens, 0)
        # The same request whole gets the same text (the simulated provider
        # answers a prompt the same way).
        whole = ask(OPEN, "Stream this.")
        self.assertEqual(whole.choices[0].message.content, text)
        self.assertEqual(whole.usage.completion_tokens, usage.completion_tokens)

    def test_tool_calls_and_the_tool_result(self):
        messages = [{"role": "user", "content": "Weather in Oslo?"}]
        answer = client(OPEN).chat.completions.create(
            model="small", messages=messages, max_tokens=64, tools=[WEATHER]
        )
        choice = answer.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        call = choice.message.tool_calls[0]
        self.assertEqual(call.type, "function")
        self.assertEqual(call.function.name, "weather")
        self.assertIsInstance(json.loads(call.function.arguments)["city"], str)
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
        final = client(OPEN).chat.completions.create(
            model="small", messages=messages, max_tokens=64, tools=[WEATHER]
        )
        self.assertIsNone(final.choices[0].message.tool_calls)
        self.assertTrue(final.choices[0].message.content)

    def test_streamed_tool_calls(self):
        stream = ask(OPEN, "Weather?", tools=[WEATHER], tool_choice="required", stream=True)
        text, calls, finish, _, _ = collect(stream)
        self.assertEqual(text, "")
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0]["name"], "weather")
        self.assertTrue(calls[0]["id"])
        self.assertIsInstance(json.loads(calls[0]["arguments"])["city"], str)

    def test_json_schema_response_format(self):
        answer = ask(
            OPEN,
            "Forecast?",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "forecast", "schema": WEATHER["function"]["parameters"], "strict": True},
            },
        )
        value = json.loads(answer.choices[0].message.content)
        self.assertIsInstance(value["city"], str)
        self.assertIsInstance(value["days"], int)

    def test_stream_over_budget_is_refused_before_it_begins(self):
        with self.assertRaises(openai.RateLimitError) as caught:
            ask(POOR, "Stream more than the budget.", stream=True)
        self.assertEqual(caught.exception.type, "insufficient_quota")

    def test_own_rpm_answers_429_with_retry_after(self):
        ask(LIMITED, "first")
        with self.assertRaises(openai.RateLimitError) as caught:
            ask(LIMITED, "second")
        err = caught.exception
        self.assertEqual(err.status_code, 429)
        self.assertEqual(err.code, "rate_limit_exceeded")
        retry_after = int(err.response.headers["retry-after"])
        self.assertTrue(1 <= retry_after <= 60, retry_after)
        self.assertEqual(err.response.headers["x-ratelimit-remaining-requests"], "0")

    def test_budget_exhausted(self):
        with self.assertRaises(openai.RateLimitError) as caught:
            ask(POOR, "Spend more than the budget.")
        err = caught.exception
        self.assertEqual(err.status_code, 429)
        self.assertEqual(err.type, "insufficient_quota")
        self.assertIn("key/poor", err.message)

    def test_invalid_key_refused(self):
        with self.assertRaises(openai.AuthenticationError) as caught:
            ask("sk-not-a-key", "hello")
        self.assertEqual(caught.exception.status_code, 401)
        self.assertEqual(caught.exception.code, "invalid_api_key")

    def test_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            ask(OPEN, "too long", max_tokens=100000)
        self.assertEqual(caught.exception.param, "max_tokens")


class Relay(unittest.TestCase):
    """The second server, whose provider is the first over HTTP."""

    def relay(self):
        return client(OPEN, RELAY_BASE_URL)

    def test_completion_through_a_real_upstream(self):
        raw = self.relay().chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": "Relay this."}], max_tokens=32
        )
        self.assertIsNotNone(raw.headers.get("x-nexus-added-us"))
        answer = raw.parse()
        direct = ask(OPEN, "Relay this.", max_tokens=32)
        self.assertEqual(answer.choices[0].message.content, direct.choices[0].message.content)
        self.assertEqual(answer.usage.completion_tokens, direct.usage.completion_tokens)

    def test_streaming_through_a_real_upstream(self):
        stream = self.relay().chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": "Relay a stream."}],
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, _, finish, usage, pieces = collect(stream)
        direct = ask(OPEN, "Relay a stream.", max_tokens=32)
        self.assertEqual(text, direct.choices[0].message.content)
        self.assertGreater(pieces, 1)
        self.assertIn(finish, ("stop", "length"))
        self.assertEqual(usage.completion_tokens, direct.usage.completion_tokens)

    def test_tool_calls_through_a_real_upstream(self):
        stream = self.relay().chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": "Weather?"}],
            max_tokens=64,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "weather"}},
            stream=True,
        )
        _, calls, finish, _, _ = collect(stream)
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(calls[0]["name"], "weather")
        json.loads(calls[0]["arguments"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
