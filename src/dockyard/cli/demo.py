"""``dockyard demo``: seed a living store (publishers, products in every state, customers)."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()


def demo() -> None:
    """Seed a demo store: 6 publishers, their products (most published, some certified, others in
    review), customers with entitlements. Does nothing when the demo is there already."""
    from dockyard.config import Settings
    from dockyard.demo.seed import PASSWORD, DemoSeeder
    from dockyard.runtime import build_runtime

    settings = Settings.from_env()
    runtime = build_runtime(settings)
    try:
        console.print("seeding the demo store...")
        done = DemoSeeder(runtime, log=console.print).seed()
    finally:
        runtime.engine.dispose()
    if done.skipped:
        console.print("the demo store is there already: nothing to do")
        raise typer.Exit(0)
    published = sum(state in ("published", "certified", "updated") for state in done.products.values())
    console.print(f"[bold]{len(done.products)} products[/bold], {published} on the store")
    for what, names in (("on hold", done.held), ("revoked", done.revoked)):
        for name in names:
            console.print(f"  {name}: {what} (a Critical finding's fix deadline passed)")
    console.print(f"accounts (password [bold]{PASSWORD}[/bold] for each):")
    for username, what in done.accounts:
        console.print(f"  {username:20} {what}")
    console.print(f"open {settings.public_url}/ to see the store")
