import pytest

from tasks.data.genres import GenreParseError, parse_genres


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{'id': 16, 'name': 'Animation'}, {'id': 35, 'name': 'Comedy'}]", ["Animation", "Comedy"]),
        ('[{"id": 18, "name": "Drama"}]', ["Drama"]),
        ('["Drama", "Science Fiction"]', ["Drama", "Science Fiction"]),
        ("[]", []),
        ("", []),
        ("  [{'id': 1, 'name': ' Horror '}]  ", ["Horror"]),
        ("[{'id': 10751, 'name': 'Family'}, {'id': 878, 'name': \"Children's\"}]", ["Family", "Children's"]),
        ("[{'id': 16, 'name': 'Tab\\there'}]", ["Tab\there"]),
    ],
)
def test_parses_python_literals_and_json(text: str, expected: list[str]) -> None:
    assert parse_genres(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "[{'id': 16, 'name': 'Animation'}",
        "{'name': 'Comedy'}",
        "[{'id': 16}]",
        "[{'id': 016, 'name': 'Animation'}]",
        "[{'id': 16, 'name': '  '}]",
        "[{'id': 16, 'name': 'Ani\nmation'}]",
        "[{'id': 16, 'name': 'Ani\x00mation'}]",
        "[42]",
        "not a list",
        "[" * 5000 + "]" * 5000,
    ],
)
def test_refuses_what_is_not_a_list_of_genres(text: str) -> None:
    with pytest.raises(GenreParseError):
        parse_genres(text)


def test_never_runs_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(GenreParseError):
        parse_genres(f"[open({str(marker)!r}, 'w')]")
    assert not marker.exists()
