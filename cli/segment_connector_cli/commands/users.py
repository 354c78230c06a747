"""`users get ID`: a profile as the Profile API returns it, looked up as the console does."""

from __future__ import annotations

from urllib.parse import quote

from segment_connector.ops.settings_document import SETTINGS_PARAMETER, parse_settings_text
from segment_connector_cli.context import Command
from segment_connector_cli.errors import PROG, CliError
from segment_connector_cli.render import dump, out


def get_user(command: Command) -> int:
    from segment_connector.domain.errors import BadRequest, NotFound
    from segment_connector.domain.explain import summary
    from segment_connector.domain.models.settings import ConnectorSettings
    from segment_connector.views.profiles import not_found_message, reference_candidates, user_view

    text = command.settings_text()
    _, errors = parse_settings_text(text or "{}")
    if errors:
        raise CliError(
            f"{command.target.parameter(SETTINGS_PARAMETER)} cannot be used ({summary(errors)}): segments cannot be "
            f"computed; fix it with `{PROG} settings put FILE` (`{PROG} settings show` shows it)"
        )
    settings = ConnectorSettings.model_validate_json(text or "{}")
    store = command.store()
    candidates = reference_candidates(command.args.id)
    for kind, value in candidates:
        try:
            # The id as typed: parse_reference decodes a URL-encoded one, so encode it first.
            view = user_view(store, settings, f"{kind}:{quote(value, safe='')}")
        except NotFound:
            continue
        except BadRequest as error:
            raise CliError(error.message) from None
        out(dump(view))
        return 0
    raise CliError(not_found_message(command.args.id, candidates))
