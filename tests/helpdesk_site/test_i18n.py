"""The console speaks English and Simplified Chinese, following the user's choice."""

from django.urls import reverse


def test_console_follows_the_browser_language(admin_client_a) -> None:
    page = admin_client_a.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    text = page.content.decode()
    assert "Kefu 控制台" in text
    assert "知识库" in text  # our own app name
    assert "FAQ 条目" in text
    english = admin_client_a.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Knowledge base" in english and "知识库" not in english


def test_the_language_menu_sticks(admin_client_a) -> None:
    admin_client_a.post(reverse("set_language"), {"language": "zh-hans", "next": "/console/"})
    page = admin_client_a.get(
        reverse("admin:knowledge_knowledgeentry_changelist"), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert "导入 CSV" in page.content.decode()
    admin_client_a.post(reverse("set_language"), {"language": "en", "next": "/console/"})
    page = admin_client_a.get(reverse("admin:knowledge_knowledgeentry_changelist"))
    assert "Import CSV" in page.content.decode()
