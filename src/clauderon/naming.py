"""Session names: readable, unique, and safe as a branch, a directory and a container name."""

from __future__ import annotations

import re
import secrets
import string
import unicodedata

from .errors import InvalidInput

MAX_NAME_LENGTH = 48
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
# Words too common to name a session after.
_STOPWORD_TEXT = """
a an the and or but of to in on at for with from by into onto is are be this that these
those it its please can could would should will you your my our me we us i make sure then
so as all some any
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_SLUG_WORDS = 4
_SLUG_MAX = 30


def validate_name(name: str) -> str:
    """Return `name` if it can be a session name, else raise with what is wrong."""
    if not name:
        raise InvalidInput("session name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"session name {name!r} is too long ({len(name)} characters, at most {MAX_NAME_LENGTH})"
        )
    if not _NAME_RE.fullmatch(name) or "--" in name:
        raise InvalidInput(
            f"invalid session name {name!r}: use lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return name


def slug_from_prompt(prompt: str) -> str:
    """The first few meaningful words of a prompt, as lowercase ASCII joined by hyphens."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    words = [w for w in re.split(r"[^a-z0-9]+", ascii_text.lower()) if w]
    meaningful = [w for w in words if w not in _STOPWORDS] or words
    slug = ""
    for word in meaningful[:_SLUG_WORDS]:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > _SLUG_MAX:
            break
        slug = candidate
    if not slug and meaningful:
        slug = meaningful[0][:_SLUG_MAX]
    return slug or "session"


def random_suffix(length: int = 4) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def generate_name(prompt: str) -> str:
    """A readable name such as `fix-login-bug-a3x9`; the suffix makes collisions rare."""
    return validate_name(f"{slug_from_prompt(prompt)}-{random_suffix()}")
