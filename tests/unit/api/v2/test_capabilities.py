"""/v2/capabilities: Ceilometer's flattened capabilities."""


def test_capabilities(client):
    shown = client.get('/v2/capabilities').json
    assert shown['api']['samples:query:complex'] is True
    assert shown['api']['meters:query:complex'] is False
    assert shown['api']['statistics:groupby'] is True
    assert shown['api'][
        'statistics:aggregation:selectable:cardinality'] is True
    assert shown['api'][
        'statistics:aggregation:selectable:quartile'] is False
    # The embedded SQLite file is not a production store.
    assert shown['storage'] == {'storage:production_ready': False}


def test_capabilities_need_a_valid_token(client):
    response = client.get('/v2/capabilities',
                          headers={'X-Identity-Status': 'Invalid'})
    assert response.status_code == 401
