"""A campaign's plan, from its file to its published results: the rules of its categories and
thresholds (rules.py), the live snapshot the resident API reads (snapshot.py), campaign files
(file/), merchants' enrolment (enrolment.py), purchase-subsidy brackets (subsidy.py), the quota
advisor (advisor.py), the satisfaction survey (survey.py), geofences (geo.py) and the results
(results.py)."""
