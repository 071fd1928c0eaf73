"""The key format: generation, parsing with typo detection, base62, checksum and the stored digest."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import string
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.keys import tokens
from app.keys.tokens import ParsedKey, base62, checksum, digest, generate, parse, scanner_regex

# Written out independently of the app's constant, so a reordered alphabet would be caught.
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
PREFIXES = ["kf", "k", "acme2", "a" * 16]
FAST = settings(max_examples=150, deadline=None, database=None)


def decode62(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + BASE62.index(char)
    return number


def make_key(prefix: str, random_part: str) -> str:
    """A key built by hand from the spec: prefix, underscore, random part, base62 CRC32 of all that."""
    body = f"{prefix}_{random_part}"
    return body + to_base62(zlib.crc32(body.encode("ascii")), 6)


def to_base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    assert number == 0
    return "".join(reversed(chars))


# -- generation -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_generated_key_has_the_documented_shape(prefix):
    key = generate(prefix)
    assert re.fullmatch(scanner_regex(prefix), key)
    assert re.fullmatch(rf"{prefix}_[0-9A-Za-z]{{33}}", key)
    assert len(key) == len(prefix) + 1 + 27 + 6
    assert key.startswith(prefix + "_")
    assert set(key[len(prefix) + 1:]) <= set(BASE62)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_generated_key_ends_with_the_crc32_of_everything_before_it(prefix):
    key = generate(prefix)
    assert decode62(key[-6:]) == zlib.crc32(key[:-6].encode("ascii"))


def test_random_part_carries_at_least_160_bits():
    assert tokens.RANDOM_LENGTH == 27
    assert 62 ** 27 >= 2 ** 160


def test_random_part_comes_from_secrets_over_the_full_range(monkeypatch):
    calls = []

    def fake_randbelow(bound):
        calls.append(bound)
        return bound - 1

    monkeypatch.setattr(tokens.secrets, "randbelow", fake_randbelow)
    key = generate("kf")
    assert calls == [62 ** 27]
    assert key == make_key("kf", "z" * 27)


def test_thousand_generated_keys_are_distinct():
    keys = {generate("kf") for _ in range(1000)}
    assert len(keys) == 1000
    assert len({key[3:30] for key in keys}) == 1000


def test_scanner_regex_is_the_one_in_the_readme():
    assert scanner_regex("kf") == r"\bkf_[0-9A-Za-z]{33}\b"


def test_scanner_regex_finds_a_key_inside_text_but_not_glued_to_other_words():
    key = generate("kf")
    pattern = re.compile(scanner_regex("kf"))
    assert pattern.findall(f'export API_KEY="{key}"\nAuthorization: Bearer {key};') == [key, key]
    assert pattern.search("x" + key) is None
    assert pattern.search(key + "x") is None
    assert pattern.search(generate("other")) is None


# -- parse: accepts -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_parse_accepts_generated_keys(prefix):
    key = generate(prefix)
    parsed = parse(key, prefix)
    assert parsed == ParsedKey(prefix=prefix, random=key[len(prefix) + 1:-6])
    assert parsed.display_start == prefix + "_" + key[len(prefix) + 1:len(prefix) + 7]
    assert len(parsed.display_start) == len(prefix) + 7


def test_parse_accepts_a_key_built_by_hand_from_the_spec():
    key = make_key("kf", "cVo3KBxmuhekLEeYolQfxno3mJc")
    parsed = parse(key, "kf")
    assert parsed is not None
    assert parsed.display_start == "kf_cVo3KB"


def test_readme_example_key_is_a_valid_key():
    example = "kf_cVo3KBxmuhekLEeYolQfxno3mJc1jt9Dw"
    assert re.fullmatch(scanner_regex("kf"), example)
    assert parse(example, "kf") == ParsedKey(prefix="kf", random="cVo3KBxmuhekLEeYolQfxno3mJc")


# -- parse: rejects -------------------------------------------------------------------------------------------------

def test_parse_rejects_a_key_with_another_prefix():
    assert parse(generate("kf"), "zz") is None
    assert parse(generate("zz"), "kf") is None


def test_parse_rejects_prefixes_that_are_prefixes_of_each_other():
    long_key, short_key = generate("kf"), generate("k")
    assert parse(long_key, "k") is None
    assert parse(short_key, "kf") is None
    # Same length as a "k" key but starting "kf": the underscore is not where "k" expects it.
    assert parse(long_key[:-1], "k") is None
    assert parse("kf" + short_key[1:], "k") is None


def test_parse_rejects_every_single_character_substitution_at_sampled_positions():
    key = generate("kf")
    positions = [0, 1, 2, 3, 4, 10, 20, 29, 30, 31, 33, 35]  # prefix, underscore, random, checksum
    rejected = 0
    for position in positions:
        for char in BASE62 + "_-.+/= ":
            if char == key[position]:
                continue
            typo = key[:position] + char + key[position + 1:]
            assert parse(typo, "kf") is None, (key, position, char)
            rejected += 1
    assert rejected > 700


def test_parse_rejects_hundreds_of_random_substitutions():
    rng = random.Random(20240517)
    for _ in range(20):
        key = generate("kf")
        for _ in range(30):
            position = rng.randrange(len(key))
            char = rng.choice([c for c in BASE62 if c != key[position]])
            typo = key[:position] + char + key[position + 1:]
            assert parse(typo, "kf") is None, (key, position, char)


def test_parse_rejects_every_adjacent_transposition():
    for _ in range(10):
        key = generate("kf")
        swaps = 0
        for i in range(len(key) - 1):
            if key[i] == key[i + 1]:
                continue
            swapped = key[:i] + key[i + 1] + key[i] + key[i + 2:]
            assert parse(swapped, "kf") is None, (key, i)
            swaps += 1
        assert swaps > 20


@pytest.mark.parametrize("change", [
    lambda key: key[:-1],
    lambda key: key[1:],
    lambda key: key[:20],
    lambda key: key + "0",
    lambda key: "0" + key,
    lambda key: key + key[-6:],
    lambda key: key[:-6],
    lambda key: key[:-6] + "0" + key[-6:],
])
def test_parse_rejects_truncated_and_extended_keys(change):
    key = generate("kf")
    assert parse(key, "kf") is not None
    assert parse(change(key), "kf") is None


@pytest.mark.parametrize("char", ["é", "０", "٣", "\u200b", "\x00", "🔑", "ß"])
def test_parse_rejects_non_ascii_characters(char):
    key = generate("kf")
    for position in (5, len(key) - 3):
        assert parse(key[:position] + char + key[position + 1:], "kf") is None


@pytest.mark.parametrize("change", [
    lambda key: " " + key,
    lambda key: key + " ",
    lambda key: key + "\n",
    lambda key: "\t" + key,
    lambda key: f" {key} ",
    lambda key: key[:10] + " " + key[11:],
])
def test_parse_rejects_whitespace_around_or_inside(change):
    assert parse(change(generate("kf")), "kf") is None


@pytest.mark.parametrize("token", ["", "kf_", "kf", "_", "0" * 36, "kf_" + "0" * 33, "KF_" + "0" * 33])
def test_parse_rejects_garbage(token):
    assert parse(token, "kf") is None


def test_parse_rejects_the_uppercased_key():
    key = generate("kf")
    assert parse(key.upper(), "kf") is None
    assert parse(key.swapcase(), "kf") is None


def test_parse_rejects_non_str_input():
    key = generate("kf")
    assert parse(None, "kf") is None
    assert parse(key.encode("ascii"), "kf") is None
    assert parse(bytearray(key.encode("ascii")), "kf") is None
    assert parse(list(key), "kf") is None
    assert parse(12345, "kf") is None


# -- base62 and checksum --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "width", "expected"), [
    (0, 1, "0"),
    (0, 5, "00000"),
    (9, 2, "09"),
    (10, 1, "A"),
    (35, 1, "Z"),
    (36, 1, "a"),
    (61, 3, "00z"),
    (62, 2, "10"),
    (62 ** 3 - 1, 3, "zzz"),
    (62 ** 3, 4, "1000"),
])
def test_base62_pads_to_width(number, width, expected):
    assert base62(number, width) == expected


def test_base62_round_trips_through_an_independent_decoder():
    rng = random.Random(7)
    for width in (1, 6, 27):
        for _ in range(200):
            number = rng.randrange(62 ** width)
            text = base62(number, width)
            assert len(text) == width
            assert decode62(text) == number
    assert decode62(base62(62 ** 27 - 1, 27)) == 62 ** 27 - 1


@pytest.mark.parametrize(("number", "width"), [(62, 1), (62 ** 6, 6), (62 ** 27, 27), (1, 0)])
def test_base62_refuses_a_number_too_large_for_the_width(number, width):
    with pytest.raises(ValueError, match="too large"):
        base62(number, width)


def test_checksum_is_six_base62_characters_of_crc32():
    for body in ["kf_", "kf_" + "0" * 27, "kf_cVo3KBxmuhekLEeYolQfxno3mJc", "acme_" + "z" * 27]:
        value = checksum(body)
        assert len(value) == 6
        assert set(value) <= set(BASE62)
        assert decode62(value) == zlib.crc32(body.encode("ascii"))


def test_checksum_is_deterministic_and_sensitive_to_its_input():
    body = "kf_cVo3KBxmuhekLEeYolQfxno3mJc"
    assert checksum(body) == checksum(body) == checksum(str(body))
    assert checksum(body) != checksum(body[:-1] + "d")
    assert checksum("kf_" + "0" * 27) != checksum("zz_" + "0" * 27)


def test_six_base62_characters_hold_every_crc32():
    assert 62 ** 6 > 2 ** 32
    assert base62(2 ** 32 - 1, 6) == to_base62(2 ** 32 - 1, 6)


# -- digest ---------------------------------------------------------------------------------------------------------

def test_digest_is_hmac_sha256_of_the_key_under_the_pepper():
    key = generate("kf")
    pepper = b"p" * 32
    value = digest(pepper, key)
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert value == hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()
    assert value != hashlib.sha256(key.encode()).hexdigest()


def test_digest_depends_on_pepper_and_key():
    key, other_key = generate("kf"), generate("kf")
    assert digest(b"pepper-one", key) == digest(b"pepper-one", key)
    assert digest(b"pepper-one", key) != digest(b"pepper-two", key)
    assert digest(b"pepper-one", key) != digest(b"pepper-one", other_key)


def test_digest_does_not_contain_the_key():
    key = generate("kf")
    assert key[3:30] not in digest(b"pepper", key)


# -- properties -----------------------------------------------------------------------------------------------------

PREFIX = st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True)
RANDOM_PART = st.integers(min_value=0, max_value=62 ** 27 - 1).map(lambda n: to_base62(n, 27))
MIXED_CHAR = st.one_of(st.sampled_from(BASE62), st.characters())


@FAST
@given(token=st.one_of(st.text(), st.text(alphabet=BASE62 + "_", min_size=30, max_size=40)))
def test_parse_never_raises_on_any_text(token):
    result = parse(token, "kf")
    assert result is None or isinstance(result, ParsedKey)


@FAST
@given(tail=st.text(min_size=33, max_size=33))
def test_parse_never_raises_on_any_text_after_the_prefix(tail):
    result = parse("kf_" + tail, "kf")
    assert result is None or isinstance(result, ParsedKey)


@FAST
@given(prefix=PREFIX)
def test_every_generated_key_parses(prefix):
    key = generate(prefix)
    parsed = parse(key, prefix)
    assert parsed is not None
    assert parsed.display_start == key[:len(prefix) + 7]


@FAST
@given(prefix=PREFIX, random_part=RANDOM_PART)
def test_every_well_formed_key_parses(prefix, random_part):
    key = make_key(prefix, random_part)
    assert re.fullmatch(scanner_regex(prefix), key)
    assert parse(key, prefix) == ParsedKey(prefix=prefix, random=random_part)


@FAST
@given(
    random_part=st.text(alphabet=MIXED_CHAR, min_size=27, max_size=27),
    check=st.text(alphabet=MIXED_CHAR, min_size=6, max_size=6),
    fix_checksum=st.booleans(),
)
def test_parse_accepts_exactly_the_texts_with_a_correct_checksum(random_part, check, fix_checksum):
    body = "kf_" + random_part
    all_base62 = set(random_part) <= set(BASE62)
    if fix_checksum and all_base62:
        check = checksum(body)
    token = body + check
    well_formed = all_base62 and set(check) <= set(BASE62) and checksum(body) == check
    assert (parse(token, "kf") is not None) == well_formed


@FAST
@given(random_part=RANDOM_PART, position=st.integers(min_value=0, max_value=35), char=MIXED_CHAR)
def test_any_single_substitution_of_a_valid_key_is_rejected(random_part, position, char):
    key = make_key("kf", random_part)
    typo = key[:position] + char + key[position + 1:]
    if typo != key:
        assert parse(typo, "kf") is None
