"""TextTemplate: the text a model sees for a product."""

from __future__ import annotations

import pytest

from indexer.catalog import Product, TextTemplate

# The default of ranker.settings (index.text_template).
DEFAULT = "{title}\nBrand: {brand}\nColor: {color}\n{bullet_points}\n{description}"

FULL = Product(
    id="B1",
    title="Chef knife",
    description="Forged from one piece of steel.",
    bullet_points=("8 inch blade", "Full tang"),
    brand="Acme",
    color="Silver",
    category=("Home", "Kitchen", "Knives"),
    price=30.0,
)


def test_renders_every_line_of_a_full_product() -> None:
    assert TextTemplate(DEFAULT).render(FULL) == (
        "Chef knife\n"
        "Brand: Acme\n"
        "Color: Silver\n"
        "8 inch blade Full tang\n"
        "Forged from one piece of steel."
    )


def test_drops_lines_whose_fields_are_all_empty() -> None:
    product = Product(id="B2", title="Plain mug", description="Holds tea.")

    assert TextTemplate(DEFAULT).render(product) == "Plain mug\nHolds tea."


def test_keeps_a_line_when_any_of_its_fields_has_a_value() -> None:
    template = TextTemplate("{title}\nBy {brand} in {color}")
    product = Product(id="B3", title="Mug", color="Red")

    assert template.render(product) == "Mug\nBy in Red"


def test_keeps_lines_without_placeholders() -> None:
    template = TextTemplate("Product:\n{brand}\n{title}")

    assert template.render(Product(id="B4", title="Mug")) == "Product:\nMug"


def test_empty_values_of_every_kind_count_as_empty() -> None:
    template = TextTemplate("{title}\n{bullet_points}\n{category}\n{price}\n{description}")

    assert template.render(Product(id="B5", title="Mug", bullet_points=(), price=None)) == "Mug"


def test_a_zero_price_is_a_value() -> None:
    template = TextTemplate("{title}\nPrice: {price}")

    assert template.render(Product(id="B6", title="Mug", price=0.0)) == "Mug\nPrice: 0.0"


def test_joins_list_fields_with_the_separator() -> None:
    template = TextTemplate("{category}\n{bullet_points}", list_separator=" | ")

    assert template.render(FULL) == "Home | Kitchen | Knives\n8 inch blade | Full tang"


def test_list_separator_defaults_to_a_space() -> None:
    assert TextTemplate("{category}").render(FULL) == "Home Kitchen Knives"


def test_collapses_runs_of_spaces_and_tabs_and_strips_lines() -> None:
    template = TextTemplate("  {title}\t\t{brand}  \n{color}   -   {description}")
    product = Product(id="B7", title="Mug", brand="Acme", color="Red", description="Tea \t cup")

    assert template.render(product) == "Mug Acme\nRed - Tea cup"


def test_a_line_left_blank_after_collapsing_is_dropped() -> None:
    template = TextTemplate("{title}\n   \n\t\n{brand}")

    assert template.render(Product(id="B8", title="Mug", brand="Acme")) == "Mug\nAcme"


def test_literal_braces_survive() -> None:
    template = TextTemplate("{{{title}}}")

    assert template.render(Product(id="B9", title="Mug")) == "{Mug}"


def test_the_same_placeholder_twice() -> None:
    template = TextTemplate("{title} ({title})")

    assert template.render(Product(id="B10", title="Mug")) == "Mug (Mug)"


def test_the_template_is_kept() -> None:
    assert TextTemplate(DEFAULT).template == DEFAULT


@pytest.mark.parametrize(
    "template",
    ["{title}\n{name}", "{sku}", "{title} {Title}", "Brand: {brand}\n{attributes[color]}"],
)
def test_refuses_unknown_fields(template: str) -> None:
    with pytest.raises(ValueError, match="unknown product field"):
        TextTemplate(template)


def test_unknown_fields_are_all_named() -> None:
    with pytest.raises(ValueError, match=r"\['name', 'sku'\]"):
        TextTemplate("{sku} {title} {name}")
