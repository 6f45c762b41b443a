"""`nexus serve` driven by the official `openai` Python client.

Run by `scripts/front_door_openai_client.sh`, which starts the server and
sets NEXUS_BASE_URL and the keys' tokens in the environment.
"""

import os
import unittest

import openai

BASE_URL = os.environ["NEXUS_BASE_URL"]
OPEN = os.environ["NEXUS_KEY_OPEN"]
LIMITED = os.environ["NEXUS_KEY_LIMITED"]
POOR = os.environ["NEXUS_KEY_POOR"]


def client(key):
    # No retries: the tests look at the first answer, 429s included.
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=30)


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

    def test_streaming_is_refused_until_served(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            ask(OPEN, "Stream this.", stream=True)
        self.assertEqual(caught.exception.status_code, 400)
        self.assertEqual(caught.exception.param, "stream")

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
