"""The README's promise in one test: a frontend added with redis-cli is served at once."""
import json

import harness


class SmokeTest(harness.ProxyTestCase):
    def test_frontend_added_in_redis_is_served(self):
        backend = self.http_backend("one")
        self.start_proxy()
        status, _, _ = self.request("GET", "/", host="www.example.test")
        self.assertEqual(status, 400)
        self.redis.rpush("frontend:www.example.test", "example", backend.url)
        status, headers, body = self.request("GET", "/hello?x=1", host="www.example.test")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["path"], "/hello?x=1")
        lines = self.access_log_lines(expected=2)
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /hello?x=1 HTTP/1.1" 200', lines[1])
        self.assertIn('"example"', lines[1])


if __name__ == "__main__":
    import unittest
    unittest.main()
