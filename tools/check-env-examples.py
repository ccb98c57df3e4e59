"""make lint: every environment variable the settings read (`env.<cast>("NAME", ...)` under app/config) is named in
.env.example or .env.prod.example, set or in a comment, so that the env examples list everything a user can set."""

import re
import sys
from pathlib import Path

READ = re.compile(r"""\benv(?:\.[a-z_]+)?\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def main() -> int:
    read = {name for path in Path("app/config").rglob("*.py") for name in READ.findall(path.read_text())}
    examples = Path(".env.example").read_text() + Path(".env.prod.example").read_text()
    missing = sorted(name for name in read if not re.search(rf"\b{name}\b", examples))
    if missing:
        print(f"check-env-examples: read by the settings, named in no env example: {', '.join(missing)}")
        return 1
    print(f"check-env-examples: the {len(read)} variables the settings read are in the env examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
