"""Imported by the test sweeps' specs (`imports: [sweep_envs]`): registers the toy envs in
every worker process, as a user's own envs module would."""

import toy_envs

toy_envs.register()
