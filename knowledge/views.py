"""Console pages of the knowledge base that are not plain model pages."""

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from knowledge.models import KnowledgeEntry
from knowledge.search import HitTest, knowledge_hit_test
from tenants.request import active_membership
from tenants.roles import Action, Area, role_allows

MAX_QUESTION_CHARS = 500


class HitTestForm(forms.Form):
    question = forms.CharField(
        label=gettext_lazy("Customer question"),
        max_length=MAX_QUESTION_CHARS,
        widget=forms.Textarea(attrs={"rows": 2, "autofocus": True}),
    )


def hit_test_view(request: HttpRequest, admin_site: object) -> HttpResponse:
    """Type a question, see what the knowledge engine would answer and why."""
    membership = active_membership(request)
    if membership is None:
        raise Http404(_("Open a tenant's console to test its knowledge."))
    if not role_allows(membership.role, Area.KNOWLEDGE, Action.VIEW):
        raise PermissionDenied
    tenant = membership.tenant
    form = HitTestForm(request.GET or None)
    tested = HitTest(candidates=[], hits=[])
    if form.is_valid():
        tested = knowledge_hit_test(tenant=tenant, query=form.cleaned_data["question"])
    context = {
        **admin_site.each_context(request),  # type: ignore[attr-defined]
        "title": _("Hit testing"),
        "opts": KnowledgeEntry._meta,
        "form": form,
        "tenant": tenant,
        "candidates": tested.candidates,
        "direct": tested.direct,
        "hits": tested.hits,
        "searched": form.is_valid(),
    }
    return TemplateResponse(request, "admin/knowledge/hit_test.html", context)
