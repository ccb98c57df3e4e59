# shellcheck shell=bash
# Reads an env file (.env, .env.prod) as Compose reads it: quotes, ${NAME} references, `export` and comments by
# Compose's rules, never as shell code (an unquoted JSON value is fine for Compose and a syntax error for a
# shell). Sourced by the scripts that need its values: the swarm's stack script and the production checks.

# env_file_load COMPOSE_COMMAND...: ENV_VALUES[NAME] = the value Compose interpolates NAME with, for every name
# it knows, the shell's environment included (Compose puts it before the file); `config --environment` prints them.
declare -gA ENV_VALUES=()
env_file_load() {
  local line output
  output=$("$@" config --environment) || return 1
  ENV_VALUES=()
  while IFS= read -r line; do
    # shellcheck disable=SC2034  # read by the scripts that source this file
    [[ "$line" == *=* ]] && ENV_VALUES[${line%%=*}]=${line#*=}
  done <<<"$output"
}

# env_file_names FILE: the names FILE sets, one per line, in its order.
env_file_names() {
  sed -nE 's/^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=.*/\2/p' "$1" | awk '!seen[$0]++'
}
