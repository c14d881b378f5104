"""The exception hierarchy: every error derives from RecsetError and keeps its built-in base."""

import pytest

import recset
from recset.errors import ConfigError, ParameterTypeError, RecsetError


def test_parameter_type_error_is_config_and_type_error() -> None:
    assert recset.ParameterTypeError is ParameterTypeError
    assert "ParameterTypeError" in recset.__all__
    err = ParameterTypeError("The 'x' parameter must be an int. Got 'a' instead.")
    assert isinstance(err, ConfigError)
    assert isinstance(err, RecsetError)
    assert isinstance(err, TypeError)
    assert isinstance(err, ValueError)  # through ConfigError


def test_parameter_type_error_is_caught_as_type_error() -> None:
    with pytest.raises(TypeError, match="'x' parameter"):
        raise ParameterTypeError("The 'x' parameter must be an int. Got 'a' instead.")
