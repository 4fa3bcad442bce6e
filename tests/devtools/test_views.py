"""The demo shop page and the console's link to it, present only with the devtools app."""

from django.urls import reverse

WITHOUT_DEVTOOLS = "tests.devtools.urls_without_devtools"


def test_the_console_home_page_links_to_the_demo_shop(owner_client_a) -> None:
    page = owner_client_a.get(reverse("admin:index")).content.decode()

    assert f'<a href="{reverse("demo")}">Demo shop page</a>' in page


def test_without_the_devtools_routes_the_console_home_page_has_no_demo_link(
    owner_client_a, settings
) -> None:
    settings.ROOT_URLCONF = WITHOUT_DEVTOOLS

    response = owner_client_a.get("/console/")

    assert response.status_code == 200
    assert "Agent console" in response.content.decode()
    assert "Demo shop page" not in response.content.decode()
    assert owner_client_a.get("/demo/").status_code == 404
