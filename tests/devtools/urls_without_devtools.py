"""The site's routes as the production settings build them: none from the devtools app."""

import devtools.urls
from helpdesk_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    route
    for route in site_urlpatterns
    if getattr(route, "urlconf_module", None) is not devtools.urls
]
