"""Settings: precedence, error messages naming file/key/expectation, secrets kept out."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kolaq_console.config import SECTIONS, ConfigError, load_settings
from kolaq_console.redact import MASK, RedactingFilter, redact

ROOT = Path(__file__).resolve().parent.parent
# Shaped like provider keys, but fake; assembled here so no key-shaped literal sits in the repo.
CANARY = "re_" + "Canary0000_" + "notarealkey" * 2
STRIPE_LIKE = "sk_" + "live_" + "abcdefghij"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_apply_without_a_file(tmp_path):
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.queue.backend == "sqlite"
    assert s.email.transport == "dev"
    assert s.inventory.low_stock_threshold == 10
    assert s.source == "packaged defaults"


# Documented in config.toml but commented out, because setting them changes behaviour.
COMMENTED_OUT = {("queue", "backend")}


def test_repo_config_toml_matches_packaged_defaults():
    """config.toml documents the defaults: it must not drift from the code."""
    text = (ROOT / "config.toml").read_text()
    data = tomllib.loads(text)
    defaults = {name: section().model_dump() for name, section in SECTIONS.items()}
    for section, values in data.items():
        for key, value in values.items():
            assert defaults[section][key] == value, f"[{section}] {key}"
    for section, values in defaults.items():
        missing = set(values) - set(data[section])
        assert missing == {k for s, k in COMMENTED_OUT if s == section}, (
            f"[{section}] keys missing from config.toml")
    for section, key in COMMENTED_OUT:
        value = defaults[section][key]
        assert f'# {key} = "{value}"' in text, f"[{section}] {key} documented, commented out"


def test_precedence_file_then_kolaq_env_then_seed_names(tmp_path):
    path = write(tmp_path, '[email]\nadmin_email = "file@kolaq.test"\n[queue]\nworkers = 2\n')
    s = load_settings(environ={"KOLAQ_CONFIG": str(path)})
    assert (s.email.admin_email, s.queue.workers) == ("file@kolaq.test", 2)

    env = {"KOLAQ_CONFIG": str(path), "KOLAQ_EMAIL__ADMIN_EMAIL": "env@kolaq.test",
           "KOLAQ_QUEUE__WORKERS": "6"}
    s = load_settings(environ=env)
    assert (s.email.admin_email, s.queue.workers) == ("env@kolaq.test", 6)

    s = load_settings(environ={**env, "ADMIN_EMAIL": "seed@kolaq.test"})
    assert s.email.admin_email == "seed@kolaq.test"


def test_redis_seed_names_build_the_url(tmp_path):
    s = load_settings(environ={"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380"}, cwd=tmp_path)
    assert s.queue.redis_url == "redis://cache.internal:6380/0"


@pytest.mark.parametrize("seed", [{"REDIS_HOST": "cache.internal"}, {"REDIS_PORT": "6380"},
                                  {"REDIS_URL": "redis://cache.internal:6379/2"}])
def test_redis_seed_names_select_redis_when_the_backend_is_not_set(tmp_path, seed, caplog):
    path = write(tmp_path, "[queue]\nworkers = 2\n")
    assert load_settings(environ={"KOLAQ_CONFIG": str(path), **seed}).queue.backend == "redis"
    # the repo's config.toml leaves the backend unset, so the seed names work with it too
    repo = load_settings(environ={"KOLAQ_CONFIG": str(ROOT / "config.toml"), **seed})
    assert repo.queue.backend == "redis"
    assert load_settings(environ={}, cwd=tmp_path).queue.backend == "sqlite"
    assert caplog.records == []


def test_an_explicit_sqlite_backend_wins_over_redis_seed_names_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, '[queue]\nbackend = "sqlite"\n')
    s = load_settings(environ={"KOLAQ_CONFIG": str(path), "REDIS_HOST": "cache.internal"})
    assert s.queue.backend == "sqlite"
    [warning] = caplog.records
    assert warning.levelname == "WARNING"
    assert warning.getMessage() == (
        f'REDIS_HOST is set but {path}: [queue] backend = "sqlite": it is ignored, the SQLite '
        "queue is used")
    caplog.clear()
    s = load_settings(environ={"KOLAQ_QUEUE__BACKEND": "sqlite", "REDIS_URL": "redis://x:1/0",
                               "REDIS_PORT": "6380"}, cwd=tmp_path)
    assert s.queue.backend == "sqlite"
    assert "REDIS_URL/REDIS_PORT are set but environment variable KOLAQ_QUEUE__BACKEND" in (
        caplog.records[0].getMessage())
    caplog.clear()
    s = load_settings(environ={"KOLAQ_QUEUE__BACKEND": "redis", "REDIS_PORT": "6380"},
                      cwd=tmp_path)
    assert s.queue.backend == "redis" and caplog.records == []
    s = load_settings(environ={"REDIS_URL": "redis://other:1/2", "REDIS_HOST": "x"}, cwd=tmp_path)
    assert s.queue.redis_url == "redis://other:1/2"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder, '[database]\nurl = "sqlite:///data/shop.db"\n'
                         '[queue]\nsqlite_path = "data/q.db"\n')
    s = load_settings(environ={"KOLAQ_CONFIG": str(path)})
    assert s.database.url == f"sqlite:///{folder / 'data' / 'shop.db'}"
    assert s.queue.sqlite_path == str(folder / "data" / "q.db")


def test_cwd_config_toml_is_used_when_no_variable(tmp_path):
    write(tmp_path, '[shop]\nname = "Cwd Shop"\n')
    assert load_settings(environ={}, cwd=tmp_path).shop.name == "Cwd Shop"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[queue]\nbakend = "redis"\n', "[queue] bakend: unknown setting; expected one of: back"),
        ('[queue]\nbackend = "redsi"\n', "[queue] backend: Input should be 'sqlite' or 'redis'"),
        ("[queue]\nworkers = \"many\"\n", "[queue] workers: Input should be a valid integer"),
        ('[shop]\ntimezone = "Mars/Olympus"\n', "[shop] timezone: Value error, unknown IANA"),
        ("[inventroy]\nlow_stock_threshold = 3\n", "unknown section [inventroy]"),
        ("[queue\nbackend = 1\n", "not valid TOML"),
        ('[database]\nurl = "mysql://x/y"\n', "expected a sqlite:// or postgresql:// URL"),
    ],
)
def test_config_file_errors_name_file_key_and_expectation(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"KOLAQ_CONFIG": str(path)})
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_env_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"environment variable KOLAQ_QUEUE__WORKERS: .*integer"):
        load_settings(environ={"KOLAQ_QUEUE__WORKERS": "lots"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="environment variable REDIS_PORT"):
        load_settings(environ={"REDIS_PORT": "abc"}, cwd=tmp_path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(environ={"KOLAQ_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    "text",
    [
        f'[email]\napi_key = "{CANARY}"\n',
        '[email]\nresend_secret = "x"\n',
        f'[email]\nfrom_address = "{CANARY}"\n',
        '[database]\nurl = "postgresql://kolaq:hunter22@db/kolaq"\n',
    ],
)
def test_secrets_in_the_file_are_refused_without_echoing_them(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"KOLAQ_CONFIG": str(path)})
    message = str(info.value)
    assert str(path) in message
    assert "environment" in message or "KOLAQ_DATABASE__URL" in message
    assert CANARY not in message and "hunter22" not in message


def test_secrets_come_from_env_and_never_show_in_repr_or_dump(tmp_path):
    env = {"RESEND_API_KEY": CANARY, "KOLAQ_SIGNING_KEY": "sign-me-please",
           "PAYSTACK_SECRET_KEY": "paystack-test-value"}
    s = load_settings(environ=env, cwd=tmp_path)
    assert s.secrets.resend_api_key.get_secret_value() == CANARY
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.secrets)):
        assert CANARY not in text and "sign-me-please" not in text
        assert "paystack-test-value" not in text


def test_redaction_masks_key_shapes_urls_and_headers():
    text = (f"key={CANARY} Authorization: Bearer abc.def.ghi "
            f"postgresql://u:pw123@h/db whsec_abcdefghij {STRIPE_LIKE}")
    clean = redact(text)
    for secret in (CANARY, "abc.def.ghi", "pw123", "whsec_abcdefghij", STRIPE_LIKE):
        assert secret not in clean
    assert clean.count(MASK) == 5


@pytest.mark.parametrize("secret, text", [
    (CANARY, "provider said no to {}"),
    ("whsec_abcdefghij", "webhook secret {} rejected"),
    (STRIPE_LIKE, "stripe key {} rejected"),
    ("rk_test_abcdefghij", "restricted key {} rejected"),
    ("tok.en-value", "header AUTHORIZATION= {} sent"),
    ("abc.def.ghi", "sent with bearer {} today"),
    ("pw123", "connect to postgresql://user:{}@db.example/shop failed"),
])
def test_each_credential_shape_is_masked_on_its_own(secret, text):
    clean = redact(text.format(secret))
    assert secret not in clean and MASK in clean
    assert redact("email #12 generic sent (provider id 0b7c-9a0e) in 0.012 s") == (
        "email #12 generic sent (provider id 0b7c-9a0e) in 0.012 s")


def test_log_filter_scrubs_messages_and_tracebacks():
    import logging

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sending with %s", (CANARY,), None)
    try:
        raise RuntimeError(f"provider said no to {CANARY}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert CANARY not in formatted
    assert MASK in formatted
