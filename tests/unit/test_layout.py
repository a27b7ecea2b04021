"""Keys and hashes read back from the store are checked whole: a trailing newline is not a key."""
import pytest

from sweepcore.layout import base_weights_path, check_key, result_path


@pytest.mark.parametrize("bad", ["abc\n", "../x", "/abs", ".hidden", "", "a/b", "a b", 7, None])
def test_a_key_is_letters_digits_dots_and_dashes_and_nothing_else(bad):
    with pytest.raises(ValueError, match="invalid trial key"):
        check_key(bad)
    with pytest.raises(ValueError):
        result_path(bad)


def test_a_weights_hash_is_exactly_64_lowercase_hex():
    assert base_weights_path("k1", "a" * 64) == f"bases/k1/model-{'a' * 64}.safetensors"
    for bad in ("a" * 64 + "\n", "A" * 64, "a" * 63, "../" + "a" * 61):
        with pytest.raises(ValueError, match="invalid sha256"):
            base_weights_path("k1", bad)
