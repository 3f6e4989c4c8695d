import pytest
from hypothesis import given
from hypothesis import strategies as st

from clauderon.errors import InvalidInput
from clauderon.naming import MAX_NAME_LENGTH, generate_name, slug_from_prompt, validate_name


@given(st.text())
def test_generated_names_are_always_valid(prompt):
    name = generate_name(prompt)
    assert validate_name(name) == name
    assert len(name) <= MAX_NAME_LENGTH


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("Fix the bug in the login form, please!", "fix-bug-login-form"),
        ("  ", "session"),
        ("日本語だけ", "session"),
        ("Crème brûlée recipe", "creme-brulee-recipe"),
        ("the a an", "the-a-an"),
        ("x" * 100, "x" * 30),
    ],
)
def test_slug_from_prompt(prompt, slug):
    assert slug_from_prompt(prompt) == slug


def test_generated_names_differ():
    assert len({generate_name("same prompt") for _ in range(50)}) > 45


@pytest.mark.parametrize(
    "name",
    ["", "A", "Upper", "-x", "x-", "a--b", "a b", "a/b", "a.b", "a_b", "ä", "a" * 49, "x\n"],
)
def test_invalid_names_are_refused(name):
    with pytest.raises(InvalidInput):
        validate_name(name)


@pytest.mark.parametrize("name", ["a", "0", "fix-bug-1", "a" * 48])
def test_valid_names(name):
    assert validate_name(name) == name
