"""Keystone token validation for the fakes of the region's services (fake-region.py,
fake-image.py), as the real services do it through keystonemiddleware: each X-Auth-Token is
validated with itself as the subject (GET /v3/auth/tokens), and a token keystone accepted is
trusted for a while (a service that asked keystone for every call would not keep up)."""
import threading
import time
import urllib.error
import urllib.request


class Tokens:
    def __init__(self, keystone, cache_seconds):
        self.keystone = keystone
        self.cache_seconds = cache_seconds
        self._valid = {}
        self._lock = threading.Lock()

    def valid(self, token):
        """True, False, or None when keystone did not answer."""
        if not self.keystone or not token:
            return False
        with self._lock:
            if self._valid.get(token, 0) > time.time():
                return True
        req = urllib.request.Request(
            self.keystone.rstrip("/") + "/auth/tokens?nocatalog",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                ok = resp.status == 200
        except urllib.error.HTTPError as e:
            return None if e.code >= 500 else False
        except (urllib.error.URLError, OSError):
            # Keystone did not answer (a loaded machine): the service cannot tell either and
            # answers 5xx; the agent's token is not to blame.
            return None
        if ok:
            with self._lock:
                self._valid[token] = time.time() + self.cache_seconds
        return ok
